"""Why a deployed run did not succeed, as a message naming the step, the item, the error and the logs."""

from __future__ import annotations

from lokki_sam.cloud import batch_jobs
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.exception_log import GENERIC_ERRORS, exception_class
from lokki_sam.cloud.locate import failed_item
from lokki_sam.cloud.stack import Deployment
from lokki_sam.cloud.status import Failure
from lokki_sam.errors import LokkiError, StepFailed
from lokki_sam.ir import FlowGraph, Node
from lokki_sam.names import function_id, map_label


class ExecutionFailed(StepFailed):
    """A deployed run ended FAILED, TIMED_OUT or ABORTED (exit code 1)."""


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
    error, message = failure.error, failure.message
    if group and error in GENERIC_ERRORS and message:
        error = exception_class(dep.client("logs"), group, message) or error
    jobs = batch_jobs.explain(dep, graph, arn, message) if any(s.options.on_batch for s in graph.steps) else None
    if jobs is not None and jobs.task is not None:  # a Batch Task: the cause is its job, the error in its log
        error, message = jobs.task.error or error, jobs.task.describe()
        group = None
    if state:
        item = f" (map item {item_text})" if item_text is not None else ""
        lines.append(f"  step: {state}{item}")
    if error or message:
        lines.append(f"  error: {error}: {message}" if message else f"  error: {error}")
    hint = f"execution {arn}"
    if node is not None:
        if jobs is not None and jobs.task is not None and jobs.task.log:
            lines.append(f"  logs: {jobs.task.log}")
        elif group:
            lines.append(f"  logs: CloudWatch log group {group}")
        hint = f"{_logs_command(dep, graph, run_id, node)}; {hint}"
    lines += jobs.lines if jobs is not None else []
    return ExecutionFailed("\n".join(lines), where=f"flow '{graph.name}'", hint=hint)


def _logs_command(dep: Deployment, graph: FlowGraph, run_id: str, node: Node) -> str:
    """Where the failed step's whole log is: SAM's command for a function, lokki-sam's for Batch jobs."""
    if node.step.options.on_batch:
        return f"lokki-sam logs {run_id} --flow {graph.name} --step {node.id}"
    return f"sam logs -n {function_id(graph.name, node.step.name)} --stack-name {dep.stack_name}"


def _locate(dep: Deployment, graph: FlowGraph, run_id: str, failure: Failure) -> tuple[str | None, str | None]:
    """(step, item) of the failure; from the run's artifacts when the history names only the map."""
    label = failure.map_label or failure.state
    block = next((m for m in graph.maps if label in (m.id, map_label(m.id))), None)
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
