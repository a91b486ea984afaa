"""`lokki-sam init`: a new project from the template lokki-sam ships, pinned to this lokki-sam.

The template is `cookiecutter-lokki/` of the repository (packaged as `lokki_sam/project/template`,
so `cookiecutter <repo> --directory cookiecutter-lokki` and `sam init --location` use the very
same files). Cookiecutter renders it and runs its hooks (answers checked before anything is
written; the starter installed and `lokki-sam generate` run after); then the project's
`requirements-dev.txt` is pinned to the running lokki-sam (`pin.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lokki_sam.errors import LokkiError
from lokki_sam.project import pin

REQUIREMENT_ANSWER = "lokki_sam_requirement"
AUTO = "auto"  # the template's default answer: pin the lokki-sam that renders it


class InitError(LokkiError):
    """The project cannot be created as asked."""


@dataclass(frozen=True)
class Created:
    root: Path
    pin: pin.Pin | None  # None: the requirement line was given as an answer


def template_dir() -> Path:
    """The packaged template (a folder inside the installed package, or the checkout's)."""
    found = Path(str(resources.files("lokki_sam.project") / "template"))
    if not (found / "cookiecutter.json").is_file():
        raise InitError(
            f"lokki-sam's project template is missing ({found})",
            hint="reinstall lokki-sam; from a checkout, `pip install -e .` in it",
        )
    return found


def questions() -> dict[str, Any]:
    """The template's answers and their defaults (cookiecutter.json, without its private keys)."""
    raw = json.loads((template_dir() / "cookiecutter.json").read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def create(
    answers: Mapping[str, str],
    output: Path,
    source: str | None,
    interactive: bool,
    on_output: Callable[[str], None],
) -> Created:
    """Render the template into `output` with `answers` (the rest asked, or their defaults), pin
    lokki-sam in the project to `source` (None: where this lokki-sam came from)."""
    known = questions()
    unknown = sorted(set(answers) - set(known))
    if unknown:
        raise InitError(
            f"unknown answer(s): {', '.join(unknown)}",
            hint=f"the template asks for: {', '.join(known)}",
        )
    chosen: pin.Pin | None = None
    context = dict(answers)
    if REQUIREMENT_ANSWER in answers and answers[REQUIREMENT_ANSWER] != AUTO:
        if source is not None:
            raise InitError(
                f"--lokki-sam and {REQUIREMENT_ANSWER}= both say which lokki-sam the project installs",
                hint="give one of them",
            )
    else:
        chosen = pin.choose(source)
        context[REQUIREMENT_ANSWER] = chosen.requirement
    root = _render(context, output, interactive)
    if chosen is not None:
        if chosen.needs_wheel:
            wheel = pin.write_project_wheel(root)
            on_output(f"wrote {wheel.relative_to(root.parent)}")
        pin.pin_requirements(root / "requirements-dev.txt", chosen)
    return Created(root, chosen)


def pin_project(project: Path, source: str | None) -> pin.Pin:
    """Pin an existing project's requirements-dev.txt to this lokki-sam (the template's hook runs this)."""
    requirements = project / "requirements-dev.txt"
    if not requirements.is_file():
        raise InitError(f"{requirements} does not exist", hint="pin a project made from lokki-sam's template")
    chosen = pin.choose(source)
    if chosen.needs_wheel:
        pin.write_project_wheel(project)
    pin.pin_requirements(requirements, chosen)
    return chosen


def _render(context: Mapping[str, str], output: Path, interactive: bool) -> Path:
    try:
        from cookiecutter import exceptions
        from cookiecutter.main import cookiecutter
    except ImportError:
        raise InitError(
            "lokki-sam init needs cookiecutter, which is not installed here", hint="pip install 'cookiecutter>=2.4'"
        ) from None
    try:
        with _quiet("cookiecutter"):  # its log repeats the hooks' own messages, with a traceback
            made = cookiecutter(
                str(template_dir()), no_input=not interactive, extra_context=dict(context), output_dir=str(output)
            )
    except exceptions.OutputDirExistsException as exc:
        raise InitError(f"{exc}", hint="choose another project_name=..., or another folder with -o") from None
    except exceptions.FailedHookException:
        raise InitError(
            "the template refused the answers (the problems are listed above); nothing was written",
            hint="run again with corrected answers, e.g. lokki-sam init project_slug=my_flows",
        ) from None
    except exceptions.CookiecutterException as exc:
        raise InitError(f"cannot render lokki-sam's project template: {exc}") from None
    return Path(made)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    handler, propagate = logging.NullHandler(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
