"""`lokki-sam size`: each built function's unzipped size against Lambda's 250 MB limit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lokki_sam.cli.state import handle_errors


@click.command("size")
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".aws-sam/build"),
    show_default=True,
    help="SAM's build output.",
)
@handle_errors
def command(build_dir: Path) -> None:
    """After `sam build`: every function's code plus layers, unzipped (Lambda allows 250 MB).

    Exits 1 when a function is over the limit; a step that needs more belongs in a container image."""
    from lokki_sam.sizes import built_sizes, report

    sizes = built_sizes(build_dir)
    for line in report(sizes):
        click.echo(line)
    over = [s.function for s in sizes if s.over]
    near = [s.function for s in sizes if s.near]
    if near:
        click.echo(f"warning: {', '.join(near)} near Lambda's 250 MB limit (code + layers, unzipped)", err=True)
    if over:
        click.echo(
            f"error: {', '.join(over)} over Lambda's 250 MB limit: `sam deploy` would fail\n"
            "  hint: move the heavy dependency to the steps that need it (@step(requirements=[...])), "
            "or package those steps as container images",
            err=True,
        )
        sys.exit(1)
