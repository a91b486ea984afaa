"""`lokki-sam graph`: draw a flow."""

from __future__ import annotations

import click

from lokki_sam.cli.state import CliState, handle_errors, pass_state
from lokki_sam.visualize import FORMATS


@click.command("graph")
@click.argument("flow_ref", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Output format.")
@pass_state
@handle_errors
def command(state: CliState, flow_ref: str | None, fmt: str) -> None:
    """Print a picture of a flow: `--format mermaid` for a README, `dot` for Graphviz."""
    from lokki_sam.loader import load_flow
    from lokki_sam.visualize import RENDERERS

    flow_obj = load_flow(state.flow_ref(flow_ref, "graph"))
    click.echo(RENDERERS[fmt](flow_obj.graph), nl=False)
