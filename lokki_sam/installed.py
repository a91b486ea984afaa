"""Before a local run: are the steps' own requirements (`@step(requirements=[...])`) installed here?

A step's requirements reach its Lambda function as a layer; a local run imports them from this
environment. Without this check a missing or wrong version fails as ModuleNotFoundError (or
worse, a different behaviour) inside the step, after everything before it ran, perhaps a whole
map. Each requirement is checked against the installed distributions (importlib.metadata) with
its specifiers and environment markers (packaging), before any step runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph


class RequirementsMissing(LokkiError):
    """A step's requirement is not installed where the flow runs locally (exit code 2)."""


@dataclass(frozen=True)
class Unmet:
    step: str
    requirement: str
    found: str  # what is installed instead: "not installed", "2.1.0 installed"


def check_installed(graph: FlowGraph) -> None:
    """Refuse to run when a step's requirement is not met by this environment, naming the steps,
    the requirements and the pip command that installs them."""
    unmet = list(_unmet(graph))
    if not unmet:
        return
    lines = [f"  step '{u.step}' requires {u.requirement}: {u.found}" for u in unmet]
    wanted = list(dict.fromkeys(u.requirement for u in unmet))
    raise RequirementsMissing(
        f"{len(wanted)} requirement(s) of the flow's steps are not met in this Python environment "
        "(a local run imports them from here)\n" + "\n".join(lines),
        where=f"flow '{graph.name}'",
        hint="install them: python -m pip install " + " ".join(shlex.quote(r) for r in wanted),
    )


def _unmet(graph: FlowGraph) -> Iterator[Unmet]:
    steps = [s for s in graph.steps if s.options.requirements]
    if not steps:
        return  # most flows: nothing to import or read
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion

    from lokki_sam.compile.layers import step_requirements  # reads a requirements file as generate does

    for step in steps:
        for line in step_requirements(step, f"flow '{graph.name}', step '{step.name}'"):
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue  # a spelling pip accepts and packaging does not: left to pip in `sam build`
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue  # not for this platform or Python
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                yield Unmet(step.name, line, "not installed")
                continue
            try:
                ok = requirement.specifier.contains(version, prereleases=True)
            except InvalidVersion:
                ok = False
            if not ok:
                yield Unmet(step.name, line, f"{requirement.name} {version} is installed")
