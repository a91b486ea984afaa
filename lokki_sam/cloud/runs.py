"""Recent executions of deployed flows, with status, start, duration and params."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from lokki_sam import names
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.flows import resolve_flow
from lokki_sam.cloud.resume import RESUMABLE
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


def list_runs(dep: Deployment, machines: dict[str, str], limit: int, options: str = "") -> list[dict[str, Any]]:
    """The `limit` newest runs across `machines`: a run and its resumes (`<run>.resume-<n>`) are one
    row with the latest attempt's status; a failed run says how to resume it (with `options`, the
    stack-choosing options the listing was given)."""
    sfn = dep.client("stepfunctions")
    found: list[tuple[str, dict[str, Any]]] = []
    for flow, arn in machines.items():
        with aws_errors(f"listing runs of {flow}"):
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=arn, PaginationConfig={"MaxItems": limit * 4}
            )
            found += [(flow, ex) for page in pages for ex in page["executions"]]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for flow, ex in sorted(found, key=lambda pair: pair[1]["startDate"]):
        run_id, _ = names.run_of_execution(ex["name"])
        runs.setdefault((flow, run_id), []).append(ex)
    newest = sorted(runs.items(), key=lambda item: item[1][-1]["startDate"], reverse=True)[:limit]
    rows = []
    for (flow, run_id), tried in newest:
        first, latest = tried[0], tried[-1]
        with aws_errors(f"run {run_id}"):
            described = sfn.describe_execution(executionArn=first["executionArn"])
        rows.append(_row(flow, run_id, first, latest, len(tried) - 1, described, options))
    return rows


def _row(
    flow: str,
    run_id: str,
    first: dict[str, Any],
    latest: dict[str, Any],
    resumes: int,
    described: dict[str, Any],
    options: str,
) -> dict[str, Any]:
    start, stop = first.get("startDate"), latest.get("stopDate")
    try:
        params = json.loads(described.get("input") or "{}")
    except json.JSONDecodeError:
        params = described.get("input")
    resumable = latest["status"] in RESUMABLE
    return {
        "flow": flow,
        "run_id": run_id,
        "status": latest["status"],
        "started": _iso(start),
        "seconds": round((stop - start).total_seconds(), 1) if isinstance(stop, dt.datetime) and start else None,
        "params": params,
        "resumes": resumes,
        "resumable": resumable,
        "resume": f"lokki-sam invoke {flow} --resume {run_id}{options}" if resumable else None,
    }


def _iso(value: Any) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else str(value)
