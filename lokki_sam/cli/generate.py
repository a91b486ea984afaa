"""`lokki-sam generate`: write or update the SAM application of the flows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lokki_sam.cli.state import CliState, handle_errors, pass_state

if TYPE_CHECKING:
    from lokki_sam.compile.merge import ExistingTemplate


@click.command("generate")
@click.argument("flow_refs", nargs=-1, metavar="FLOW_REF...")
@click.option(
    "--template",
    "template",
    metavar="FILE",
    help="File to write or update [default: template.yaml; serverless.yml with --target serverless].",
)
@click.option("--code-uri", metavar="DIR", help="Functions' CodeUri, relative to the template [default: src].")
@click.option(
    "--target",
    type=click.Choice(["sam", "serverless"]),
    help="What to write: sam (template.yaml) or serverless (serverless.yml) [default: config target, else sam].",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; print a diff and exit 1 if anything is stale (2 if it would leave a reference dangling).",
)
@click.option("--prune", is_flag=True, help="Remove the flows the template records but FLOW_REF does not name.")
@click.option(
    "--force", is_flag=True, help="Write even when your entries refer to generated ones this run removes (warns)."
)
@pass_state
@handle_errors
def command(
    state: CliState,
    flow_refs: tuple[str, ...],
    template: str | None,
    code_uri: str | None,
    target: str | None,
    check: bool,
    prune: bool,
    force: bool,
) -> None:
    """Write or update template.yaml (or serverless.yml), statemachine/<flow>.asl.json, events/ and layers/.

    FLOW_REF is path/to/file.py[:flow] or package.module[:flow]; a module without :flow gives
    all its flows. Without FLOW_REF: the flows of lokki.toml (`flow`, `flows`). The flows the
    template already records are regenerated too (from where they came), unless --prune.
    Your own resources, parameters, outputs, properties and comments survive; a generated entry
    that one of yours refers to is not removed without --force.
    """
    from lokki_sam.config import generated_file
    from lokki_sam.generate import display, plan, requirements_warning, select

    config = state.config
    target = target or str(config.get("target", "sam"))
    template_path = Path(template or generated_file(config, target))
    selection = select(flow_refs, template_path, config, prune=prune, code_uri=code_uri, target=target)
    result = plan(selection.flows, template_path, config, code_uri, selection.template, target=target)
    for note in [*selection.moved, *result.notes]:
        click.echo(f"note: {note}", err=True)
    if result.dangling and not check:
        check_references(result.dangling, str(template_path), force)
    if check:
        stale = result.stale()
        if stale:
            click.echo(result.diff(), nl=False)
            names = ", ".join(display(p, result.root) for p in stale)
            click.echo(f"stale: {names}; run `lokki-sam generate` to update", err=True)
            if result.dangling:
                check_references(result.dangling, str(template_path), force=False)
            sys.exit(1)
        click.echo("generated files are up to date")
        remember(selection.template)
        return
    warning = requirements_warning(template_path.parent / (code_uri or str(config.get("code_uri", "src"))))
    if warning:
        click.echo(warning, err=True)
    docker = docker_note(result.image_steps, "serverless package" if target == "serverless" else "sam build")
    if docker:
        click.echo(docker, err=True)
    done = result.write()
    remember(selection.template)
    for name in selection.removed:
        click.echo(f"removed flow '{name}' (--prune): its functions, state machine, events and outputs")
    for line in done:
        click.echo(line)
    if not done and not selection.removed:
        click.echo("generated files are up to date")


def remember(template: ExistingTemplate | None) -> None:
    """Keep what this run learnt about the template (compile/memo.py), now that it succeeded."""
    if template is not None and template.memo is not None:
        template.memo.commit()


def check_references(dangling: list[str], template: str, force: bool) -> None:
    """Refuse to remove generated entries that the user's entries refer to, or with `force` warn."""
    from lokki_sam.errors import LokkiError

    listed = "".join(f"\n    {line}" for line in dangling)
    if force:
        click.echo(f"warning: {template}: written anyway (--force), `sam deploy` fails until fixed:{listed}", err=True)
        return
    raise LokkiError(
        f"{len(dangling)} reference(s) of yours would be left without their target, so nothing was written:{listed}",
        where=template,
        hint="update or delete what refers to it (point it at the renamed step's new entry), then generate again; "
        "--force writes the template anyway",
    )


def docker_note(steps: list[str], builder: str = "sam build") -> str | None:
    """Image steps are built by `builder` with Docker: say so now when no daemon answers here."""
    import os

    from lokki_sam.compile.images import docker_problem

    problem = docker_problem(os.environ) if steps else None
    if problem is None:
        return None
    return (
        f"note: {len(steps)} step(s) are container images, which `{builder}` builds with Docker, but {problem}: "
        f"start Docker (or set DOCKER_HOST) before `{builder}` (docs/docker.md)"
    )
