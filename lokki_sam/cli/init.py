"""`lokki-sam init`: a new project from lokki-sam's own template (see lokki_sam.project.create)."""

from __future__ import annotations

from pathlib import Path

import click

from lokki_sam.cli.state import handle_errors
from lokki_sam.errors import LokkiError

SOURCE_HELP = (
    "Where the project installs lokki-sam from: wheel (a wheel of this lokki-sam, written into the project), "
    "checkout (this lokki-sam's checkout, by file URL), index (lokki-sam==VERSION from your package index), or "
    "a URL pip installs (git+https://...). Default: where this lokki-sam came from (a checkout or a local "
    "wheel: wheel)."
)


@click.command("init")
@click.argument("answers", nargs=-1, metavar="[NAME=VALUE]...")
@click.option(
    "-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True
)
@click.option("--no-input", is_flag=True, help="Ask nothing: the answers given, else the template's defaults.")
@click.option("--lokki-sam", "source", metavar="SOURCE", help=SOURCE_HELP)
@click.option(
    "--pin",
    "pin_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Create nothing: pin this existing project's requirements-dev.txt to this lokki-sam.",
)
@handle_errors
def command(
    answers: tuple[str, ...], output_dir: Path, no_input: bool, source: str | None, pin_dir: Path | None
) -> None:
    """Create a project: a flow, its SAM app, tests, samconfig.toml, and a requirements-dev.txt that
    installs this very lokki-sam. Answers (project_name=..., starter=birds|wordcount|minimal, ...) are
    asked unless given or --no-input."""
    from lokki_sam.project import create

    if pin_dir is not None:
        if answers:
            raise LokkiError("--pin takes no answers", hint="lokki-sam init --pin PROJECT_DIR [--lokki-sam SOURCE]")
        pinned = create.pin_project(pin_dir, source)
        click.echo(f"pinned {pin_dir / 'requirements-dev.txt'}: {pinned.requirement}: {pinned.why}", err=True)
        return
    made = create.create(
        parse_answers(answers),
        output_dir,
        source,
        interactive=not no_input,
        on_output=lambda t: click.echo(t, err=True),
    )
    if made.pin is not None:
        click.echo(f"lokki-sam pinned in requirements-dev.txt: {made.pin.requirement}: {made.pin.why}", err=True)
    click.echo(str(made.root))


def _echo(text: str) -> None:
    click.echo(text, err=True)


def parse_answers(answers: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for answer in answers:
        name, sep, value = answer.partition("=")
        if not sep or not name.strip():
            raise LokkiError(f"answer {answer!r} is not NAME=VALUE", hint="e.g. lokki-sam init project_name=my-flows")
        parsed[name.strip()] = value
    return parsed
