"""Start a deployed flow with validated parameters and follow it until it ends.

The execution name is the run id (as in local runs), so the runtime writes every artifact under
`lokki/<flow>/<run id>/` and the result is read back from there with `lokki_sam.execution`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from lokki_sam import layout, names
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.stack import Deployment
from lokki_sam.cloud.status import TERMINAL, Snapshot, execution_arn, snapshot
from lokki_sam.ir import FlowGraph

EXECUTION_NAME_MAX = 80 - len(names.resume_execution_name("", 9999))  # room for `.resume-<n>` on a resume
POLL_FIRST, POLL_MAX = 0.2, 2.0
JSON_NATIVE = (str, int, float, bool, type(None))


def new_execution_name(flow: str) -> str:
    suffix_len = len(layout.new_run_id("x")) - 1  # "-YYYYmmddTHHMMSS-xxxxxx"
    return layout.new_run_id(flow[: EXECUTION_NAME_MAX - suffix_len])


def execution_input(raw: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The given parameters as JSON: coerced values where JSON holds them exactly, else the
    text given (the runtime coerces it with the same rules, so it means the same there)."""
    out: dict[str, Any] = {}
    for name, text in raw.items():
        value = resolved[name]
        if isinstance(value, tuple | set | frozenset):
            value = sorted(value) if isinstance(value, set | frozenset) else list(value)
        out[name] = value if _json_exact(value) else text
    return out


def _json_exact(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # JSON has no nan/inf: send the text, the runtime coerces it the same way
    if isinstance(value, JSON_NATIVE):
        return True
    if isinstance(value, list):
        return all(_json_exact(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_exact(v) for k, v in value.items())
    return False


def start_run(dep: Deployment, graph: FlowGraph, given: dict[str, Any]) -> tuple[str, str]:
    """Start an execution named by a new run id; return (run id, execution ARN)."""
    sm_arn = dep.state_machine_arn(graph.name)
    run_id = new_execution_name(graph.name)
    with aws_errors(f"starting flow '{graph.name}'"):
        started = dep.client("stepfunctions").start_execution(
            stateMachineArn=sm_arn, name=run_id, input=json.dumps(given)
        )
    return run_id, str(started.get("executionArn") or execution_arn(sm_arn, run_id))


def wait(
    dep: Deployment, arn: str, on_update: Callable[[Snapshot], None], sleep: Callable[[float], None] = time.sleep
) -> Snapshot:
    """Poll until the execution ends; return its last snapshot."""
    sfn = dep.client("stepfunctions")
    delay = POLL_FIRST
    while True:
        with aws_errors("following the run"):
            status = str(sfn.describe_execution(executionArn=arn)["status"])
        snap = snapshot(sfn, arn, status)
        on_update(snap)
        if status in TERMINAL:
            return snap
        sleep(delay)
        delay = min(delay * 1.5, POLL_MAX)
