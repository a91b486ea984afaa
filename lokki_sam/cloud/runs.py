"""Recent executions of deployed flows, with status, start, duration and params."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.flows import resolve_flow
from lokki_sam.cloud.stack import Deployment, StackNotFound
from lokki_sam.config import Config


def state_machines(dep: Deployment, flow_arg: str | None, config: Config) -> dict[str, str]:
    """{flow label: state machine ARN}: the one FLOW names, else every flow of the stack."""
    if flow_arg is None:
        if not dep.flows():
            raise StackNotFound(
                f"stack '{dep.stack_name}' has no lokki-sam flows (no *StateMachineArn outputs)",
                hint="pass the --stack-name of a stack deployed from a `lokki-sam generate` template",
            )
        return dep.flows()
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
