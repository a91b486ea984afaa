"""`lokki-sam invoke`: start a deployed flow with validated parameters, follow it, print its result.

The execution name is the run id (as in local runs), so the runtime writes every artifact under
`lokki/<flow>/<run id>/` and the result is read back from there with `lokki_sam.execution`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import click

from lokki_sam.cli import get_config, handle_errors, json_result, print_result
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.flows import resolve_flow
from lokki_sam.cloud.locate import failed_item
from lokki_sam.cloud.logs import GENERIC_ERRORS, exception_class
from lokki_sam.cloud.options import aws_options, deployment, pop_aws
from lokki_sam.cloud.result import read_output
from lokki_sam.cloud.stack import Deployment
from lokki_sam.cloud.status import TERMINAL, Failure, Snapshot, diagnose, execution_arn, snapshot
from lokki_sam.cloud.view import ExecutionView
from lokki_sam.compile import names
from lokki_sam.compile.asl import map_label as map_label_of  # the Map state's Label (map run ARNs carry it)
from lokki_sam.errors import LokkiError, StepFailed
from lokki_sam.ir import FlowGraph, Node
from lokki_sam.params import parse_assignments, resolve_params

EXECUTION_NAME_MAX = 80
POLL_FIRST, POLL_MAX = 0.2, 2.0
JSON_NATIVE = (str, int, float, bool, type(None))


class ExecutionFailed(StepFailed):
    """A deployed run ended FAILED, TIMED_OUT or ABORTED (exit code 1)."""


def new_execution_name(flow: str) -> str:
    from lokki_sam.local import new_run_id

    suffix_len = len(new_run_id("x")) - 1  # "-YYYYmmddTHHMMSS-xxxxxx"
    return new_run_id(flow[: EXECUTION_NAME_MAX - suffix_len])


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


def failure_error(dep: Deployment, graph: FlowGraph, run_id: str, failure: Failure, arn: str) -> ExecutionFailed:
    """The message for a run that did not succeed: step, error, and where its logs are."""
    what = {
        "FAILED": "failed",
        "TIMED_OUT": "timed out (the state machine's or a task's timeout)",
        "ABORTED": "was aborted (StopExecution: console, CLI or a redeploy)",
    }.get(failure.status, failure.status.lower())
    lines = [f"run {run_id} {what}"]
    state, item_text = _locate(dep, graph, run_id, failure)
    node = _node(graph, state)
    function = dep.function_name(graph.name, node.step.name) if node is not None else None
    group = dep.log_group(function) if function else None
    error = failure.error
    if group and error in GENERIC_ERRORS and failure.message:
        error = exception_class(dep.client("logs"), group, failure.message) or error
    if state:
        item = f" (map item {item_text})" if item_text is not None else ""
        lines.append(f"  step: {state}{item}")
    if error or failure.message:
        lines.append(f"  error: {error}: {failure.message}" if failure.message else f"  error: {error}")
    hint = f"execution {arn}"
    if node is not None:
        if group:
            lines.append(f"  logs: CloudWatch log group {group}")
        hint = f"sam logs -n {names.function_id(graph.name, node.step.name)} --stack-name {dep.stack_name}; {hint}"
    return ExecutionFailed("\n".join(lines), where=f"flow '{graph.name}'", hint=hint)


def _locate(dep: Deployment, graph: FlowGraph, run_id: str, failure: Failure) -> tuple[str | None, str | None]:
    """(step, item) of the failure; from the run's artifacts when the history names only the map."""
    label = failure.map_label or failure.state
    block = next((m for m in graph.maps if label in (m.id, map_label_of(m.id))), None)
    in_body = failure.state is not None and block is not None and failure.state != block.id
    if block is None or in_body:
        return failure.state, failure.item
    item = int(failure.item.split("..")[0]) if failure.item else None
    try:
        with aws_errors("locating the failed step"):
            found = failed_item(dep.store(graph.name), graph, run_id, block, item)
    except LokkiError:  # a best-effort extra: the map id is still a fair answer
        found = None
    if found is None:
        return failure.state or block.id, failure.item
    return found[0], failure.item or str(found[1])


def _node(graph: FlowGraph, state: str | None) -> Node | None:
    if state is None:
        return None
    try:
        return graph.node(state)
    except KeyError:
        return None


@click.command()
@click.argument("flow_arg", metavar="[FLOW]", required=False)
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A flow parameter (repeatable).")
@click.option("--no-wait", is_flag=True, help="Start the run, print its id and return.")
@click.option("--json", "as_json", is_flag=True, help="JSON progress lines on stderr and a JSON result on stdout.")
@aws_options
@handle_errors
def invoke(flow_arg: str | None, params: tuple[str, ...], no_wait: bool, as_json: bool, **kwargs: Any) -> None:
    """Run a deployed flow and print its result.

    FLOW is path/to/file.py[:flow], package.module[:flow], or the name of a flow in the module
    set as `flow` in lokki.toml (default: that flow).
    """
    aws = pop_aws(kwargs)
    config = get_config()
    flow_obj = resolve_flow(flow_arg, config)
    graph = flow_obj.graph
    where = f"flow '{graph.name}'"
    raw = parse_assignments(params, where=where)
    resolved = resolve_params(graph.params, raw, where=where)  # refuse bad input before touching AWS
    given = execution_input(raw, resolved)
    dep = deployment(config, aws)
    run_id, arn = start_run(dep, graph, given)
    if no_wait:
        if as_json:
            click.echo(json.dumps({"flow": graph.name, "run_id": run_id, "execution_arn": arn, "status": "running"}))
        else:
            click.echo(run_id)
        return
    view = ExecutionView(as_json)
    view.started(graph.name, run_id, arn, given)
    began = time.monotonic()
    try:
        snap = wait(dep, arn, view.update)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following run {run_id}; it goes on in the cloud: lokki-sam result {run_id}", err=True)
        raise SystemExit(130) from None
    view.finished(run_id, snap.status, time.monotonic() - began, snap.maps)
    if snap.status != "SUCCEEDED":
        raise failure_error(dep, graph, run_id, diagnose(dep.client("stepfunctions"), arn, snap.status), arn)
    value = read_output(dep, graph, run_id)
    if as_json:
        payload = {
            "flow": graph.name,
            "run_id": run_id,
            "params": json_result(resolved),
            "result": json_result(value),
            "failed_items": [{"map": m.label, "count": m.failed} for m in snap.maps if m.failed],
            "execution_arn": arn,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        print_result(value)
