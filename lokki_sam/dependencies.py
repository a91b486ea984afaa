"""A step's own Python dependencies: `@step(requirements=["numpy<2.3"])` or a requirements file.

Checked where they enter (definition time), so a typo is an error naming the step, not a pip
failure in the middle of `sam build`. Steps with the same set share one Lambda layer
(`compile/layers.py`), so a heavy library is packaged only into the functions that import it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from lokki_sam.errors import FlowDefinitionError

# PEP 508 without its rarer corners: a name, extras, version specifiers or a URL, an env marker.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION = r"(?:===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9_.*+!-]+"
_REQUIREMENT_PATTERN = (
    rf"(?P<name>{_NAME})\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"
    rf"(?:(?:{_VERSION})(?:\s*,\s*{_VERSION})*|@\s*\S+)?\s*(?:;\s*[^;]+)?"
)


@functools.cache
def _requirement() -> re.Pattern[str]:
    return re.compile(_REQUIREMENT_PATTERN)  # compiled on first use, not at a Lambda's cold start


def normalize(requirement: str) -> str:
    """One spelling per requirement, so equal sets share one layer: `NumPy <2.3` -> `numpy<2.3`."""
    found = _requirement().fullmatch(requirement.strip())
    assert found is not None
    name = re.sub(r"[-_.]+", "-", found.group("name")).lower()
    rest = requirement.strip()[found.end("name") :]
    return name + re.sub(r"\s+", "", rest) if "@" not in rest else f"{name} {rest.strip()}"


def check_requirements(value: Sequence[str] | str | None, where: str) -> tuple[str, ...] | str:
    """A list of requirement lines (checked, normalized, sorted) or the path of a requirements file
    (checked when `generate` reads it: it lives next to the code, not in the Lambda)."""
    if value is None:
        return ()
    if isinstance(value, str | Path):
        text = str(value)
        if not text.strip() or "\n" in text:
            raise FlowDefinitionError(
                "requirements must be a list of requirement lines or the path of a requirements file",
                where=where,
                hint='requirements=["requests>=2.31"] or requirements="requirements/fetch.txt"',
            )
        return text
    if not isinstance(value, Sequence) or not all(isinstance(r, str) for r in value):
        raise FlowDefinitionError(f"requirements must be a list of strings, got {value!r}", where=where)
    return tuple(sorted({check_line(r, where) for r in value}))


def check_line(line: str, where: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", line.strip()) or line.strip().startswith("-"):
        raise FlowDefinitionError(
            f"requirement {line!r} is not a single requirement (pip options and control characters are refused)",
            where=where,
            hint="one package per entry, like 'numpy<2.3' or 'pkg @ https://...'; index settings go in pip's config",
        )
    if not _requirement().fullmatch(line.strip()):
        raise FlowDefinitionError(
            f"requirement {line!r} is not a valid requirement",
            where=where,
            hint="write it as pip does: 'name', 'name==1.2', 'name>=1,<2', 'name[extra]', 'name @ https://...'",
        )
    return normalize(line)


def read_requirements_file(path: Path, where: str) -> tuple[str, ...]:
    """The requirement lines of a requirements file (comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowDefinitionError(f"requirements file {path} not found", where=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowDefinitionError(f"cannot read requirements file {path}: {exc}", where=where) from None
    lines = [line.split(" #", 1)[0].strip() for line in text.splitlines()]
    return tuple(sorted({check_line(line, f"{where}, {path}") for line in lines if line and not line.startswith("#")}))
