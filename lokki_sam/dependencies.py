"""A step's own Python dependencies: `@step(requirements=["numpy<2.3"])` or a requirements file.

Checked where they enter (definition time: one requirement per entry, no pip options, no credentials
in a URL) and parsed as pip parses them when `generate` packages them (`normalize`, with the
`packaging` library, which only the command line has), so a typo is an error naming the step, not a
pip failure in the middle of `sam build`. Steps with the same set share one Lambda layer
(`compile/layers.py`), so a heavy library is packaged only into the functions that import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from lokki_sam.errors import FlowDefinitionError

_PIP_OPTIONS_HINT = "one package per entry, like 'numpy<2.3' or 'pkg @ https://...'; index settings go in pip's config"
_CREDENTIALS_HINT = (
    "keep credentials out of requirement lines (they would be written into the template and the layer): "
    "let pip find them in ~/.netrc or its keyring, set the index URL in the environment where `sam build` runs "
    "(PIP_INDEX_URL / PIP_EXTRA_INDEX_URL), or write the secret part as ${VARIABLE}, "
    "which pip reads from the environment"
)


def check_requirements(value: Sequence[str] | str | None, where: str) -> tuple[str, ...] | str:
    """A list of requirement lines (checked, sorted) or the path of a requirements file
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
    """One requirement line as written (stripped), refused when it is not one requirement or carries
    a credential. Checked wherever a step is defined (also in a Lambda, so nothing but the standard
    library here); its syntax is parsed by `normalize` when `generate` packages it."""
    text = line.strip()
    if re.search(r"[\x00-\x1f\x7f]", text) or text.startswith("-"):
        raise FlowDefinitionError(
            f"requirement {line!r} is not a single requirement (pip options and control characters are refused)",
            where=where,
            hint=_PIP_OPTIONS_HINT,
        )
    if not text:
        raise FlowDefinitionError("requirement '' is empty", where=where, hint=_PIP_OPTIONS_HINT)
    from lokki_sam.secret_check import url_credentials

    credential = url_credentials(text)
    if credential is not None:
        raise FlowDefinitionError(
            f"requirement {_redacted(text)!r} holds {credential} in its URL", where=where, hint=_CREDENTIALS_HINT
        )
    return text


def _redacted(line: str) -> str:
    """The line with a URL's userinfo hidden, so the refusal does not print the secret."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", line)


def normalize(line: str, where: str) -> str:
    """One spelling per requirement, so equal sets share one layer (`NumPy <2.3` -> `numpy<2.3`),
    parsed as pip does (PEP 508, with `packaging`): a valid line stays valid, environment markers
    included (`; python_version < "3.12" and sys_platform == "linux"`). Command line only."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        raise FlowDefinitionError(
            f"requirement {line!r} is not a valid requirement: {str(exc).splitlines()[0]}",
            where=where,
            hint="write it as pip does: 'name', 'name==1.2', 'name>=1,<2', 'name[extra]', 'name @ https://...', "
            "'name; python_version < \"3.12\"'",
        ) from None
    requirement.name = canonicalize_name(requirement.name)
    return str(requirement)


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


def normalized(requirements: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Requirement lines parsed and normalized, without duplicates, sorted (one layer per set)."""
    return tuple(sorted({normalize(line, where) for line in requirements}))
