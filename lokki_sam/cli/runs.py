"""`lokki-sam runs`: recent executions of deployed flows."""

from __future__ import annotations

import json
from typing import Any

import click

from lokki_sam.cli.options import aws_arguments, aws_options, pop_aws
from lokki_sam.cli.state import CliState, handle_errors, pass_state


def render_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    several = len({row["flow"] for row in rows}) > 1
    for column in ("FLOW",) * several + ("RUN ID", "STATUS", "STARTED (UTC)", "DURATION", "PARAMS"):
        table.add_column(column, no_wrap=column != "PARAMS")
    colours = {"SUCCEEDED": "green", "RUNNING": "cyan", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}
    for row in rows:
        colour = colours.get(row["status"], "white")
        duration = "-" if row["seconds"] is None else f"{row['seconds']:.1f} s"
        status = row["status"].lower() + (f" (resumed {row['resumes']}x)" if row["resumes"] else "")
        params = json.dumps(row["params"], separators=(",", ":")) if row["params"] else "{}"
        table.add_row(
            *(row["flow"],) * several,
            row["run_id"],
            f"[{colour}]{status}[/]",
            row["started"],
            duration,
            params,
        )
    console = Console(highlight=False, width=200)
    console.print(table)
    for row in rows:
        if row["resumable"]:
            console.print(f"resume {row['run_id']}: {row['resume']}")


@click.command("runs")
@click.argument("flow_arg", metavar="[FLOW]", required=False)
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list on stdout.")
@aws_options
@pass_state
@handle_errors
def command(state: CliState, /, flow_arg: str | None, limit: int, as_json: bool, **kwargs: Any) -> None:
    """List recent runs of the deployed flows (or of FLOW), newest first."""
    from lokki_sam.cloud.runs import list_runs, state_machines
    from lokki_sam.cloud.stack import deployment

    aws = pop_aws(kwargs)
    dep = deployment(state.config, aws)
    rows = list_runs(dep, state_machines(dep, flow_arg, state.config), limit, aws_arguments(aws))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs yet in stack '{dep.stack_name}'; start one with `lokki-sam invoke`", err=True)
    else:
        render_table(rows)
