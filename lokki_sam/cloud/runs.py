"""`lokki-sam runs`: recent executions of deployed flows, with status, start, duration and params."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from lokki_sam.cli import get_config, handle_errors
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.flows import resolve_flow
from lokki_sam.cloud.options import aws_options, deployment, pop_aws
from lokki_sam.cloud.stack import Deployment, StackNotFound


def state_machines(dep: Deployment, flow_arg: str | None) -> dict[str, str]:
    """{flow label: state machine ARN}: the one FLOW names, else every flow of the stack."""
    if flow_arg is None:
        if not dep.flows():
            raise StackNotFound(
                f"stack '{dep.stack_name}' has no lokki-sam flows (no *StateMachineArn outputs)",
                hint="pass the --stack-name of a stack deployed from a `lokki-sam generate` template",
            )
        return dep.flows()
    config = get_config()
    # A bare flow name needs no import of the flow's code to list its runs.
    plain = flow_arg.isidentifier() and not config.get("flow")
    name = flow_arg if plain else resolve_flow(flow_arg, config).name
    return {name: dep.state_machine_arn(name)}


def list_runs(dep: Deployment, machines: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """The `limit` newest executions across `machines`, with their input (one DescribeExecution each)."""
    sfn = dep.client("stepfunctions")
    found: list[tuple[str, dict[str, Any]]] = []
    for flow, arn in machines.items():
        with aws_errors(f"listing runs of {flow}"):
            found += [(flow, ex) for ex in sfn.list_executions(stateMachineArn=arn, maxResults=limit)["executions"]]
    found.sort(key=lambda pair: pair[1]["startDate"], reverse=True)
    rows = []
    for flow, ex in found[:limit]:
        with aws_errors(f"run {ex['name']}"):
            rows.append(_row(flow, ex, sfn.describe_execution(executionArn=ex["executionArn"])))
    return rows


def _row(flow: str, ex: dict[str, Any], described: dict[str, Any]) -> dict[str, Any]:
    start, stop = ex.get("startDate"), ex.get("stopDate")
    try:
        params = json.loads(described.get("input") or "{}")
    except json.JSONDecodeError:
        params = described.get("input")
    return {
        "flow": flow,
        "run_id": ex["name"],
        "status": ex["status"],
        "started": _iso(start),
        "seconds": round((stop - start).total_seconds(), 1) if isinstance(stop, dt.datetime) and start else None,
        "params": params,
    }


def _iso(value: Any) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else str(value)


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
        params = json.dumps(row["params"], separators=(",", ":")) if row["params"] else "{}"
        table.add_row(
            *(row["flow"],) * several,
            row["run_id"],
            f"[{colour}]{row['status'].lower()}[/]",
            row["started"],
            duration,
            params,
        )
    Console(highlight=False, width=200).print(table)


@click.command()
@click.argument("flow_arg", metavar="[FLOW]", required=False)
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list on stdout.")
@aws_options
@handle_errors
def runs(flow_arg: str | None, limit: int, as_json: bool, **kwargs: Any) -> None:
    """List recent runs of the deployed flows (or of FLOW), newest first."""
    dep = deployment(get_config(), pop_aws(kwargs))
    rows = list_runs(dep, state_machines(dep, flow_arg), limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs yet in stack '{dep.stack_name}'; start one with `lokki-sam invoke`", err=True)
    else:
        render_table(rows)
