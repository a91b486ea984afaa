"""Why a deployed run did not succeed, as a message naming the step, the item, the error and the logs."""

from __future__ import annotations

from typing import Any

from lokki_sam.cloud import batch_jobs
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.engine_log import EngineFaults, engine_faults
from lokki_sam.cloud.exception_log import GENERIC_ERRORS, exception_class
from lokki_sam.cloud.locate import failed_item
from lokki_sam.cloud.stack import Deployment
from lokki_sam.cloud.status import Failure
from lokki_sam.errors import LokkiError, StepFailed
from lokki_sam.execution import failure_records
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.names import function_id, map_label

MAP_INCOMPLETE = "MapIncomplete"  # the agg step's error when the engine let a map with failed items succeed


class ExecutionFailed(StepFailed):
    """A deployed run ended FAILED, TIMED_OUT or ABORTED (exit code 1)."""


def failure_error(dep: Deployment, graph: FlowGraph, run_id: str, failure: Failure, arn: str) -> ExecutionFailed:
    """The message for a run that did not succeed: step, item, error, and where its logs are.

    A failed map item is described by the record the runtime stored for it (step, items,
    exception, the user's traceback) wherever the engine's own account is thinner: LocalStack
    lets the map succeed and the agg step fails on the missing items; ministack reports every
    exception as `Runtime.HandlerError`."""
    what = {
        "FAILED": "failed",
        "TIMED_OUT": "timed out (the state machine's or a task's timeout)",
        "ABORTED": "was aborted (StopExecution: console, CLI or a redeploy)",
    }.get(failure.status, failure.status.lower())
    lines = [f"run {run_id} {what}"]
    state, item_text = _locate(dep, graph, run_id, failure)
    reported, message, trace = failure.error, failure.message, ""
    record = _item_record(dep, graph, run_id, failure, state, item_text)
    if record is not None:
        items = record["items"]
        state, item_text = str(record["step"]), str(items[0]) if len(items) == 1 else f"{items[0]}..{items[-1]}"
        message, trace = str(record.get("message", "")), str(record.get("traceback", ""))
    elif reported == MAP_INCOMPLETE:  # no item raised: the runtime's account of what is missing
        message = message.split("\n  hint: ", 1)[0].removeprefix(f"flow '{graph.name}', run {run_id}: ")
        if faults := _engine_faults(dep, arn):
            message += f"\n  {faults.describe()}"
    node = _node(graph, state)
    function = dep.function_name(graph.name, node.step.name) if node is not None else None
    group = dep.log_group(function) if function else None
    error = str(record["error"]) if record is not None else reported
    if record is None and group and error in GENERIC_ERRORS and message:
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
    lines += [f"    {line}" for line in trace.splitlines()]
    if node is not None and (note := retry_note(graph, node, reported, error)):
        lines.append(f"  note: {note}")
    resume = f"lokki-sam invoke {graph.name} --resume {run_id}"
    hints = [f"once the cause is fixed, continue the run (only what did not finish runs again): {resume}"]
    if node is not None:
        if jobs is not None and jobs.task is not None and jobs.task.log:
            lines.append(f"  logs: {jobs.task.log}")
        elif group:
            lines.append(f"  logs: CloudWatch log group {group}")
        hints.append(_logs_command(dep, graph, run_id, node))
    lines += jobs.lines if jobs is not None else []
    hints.append(f"execution {arn}")
    return ExecutionFailed("\n".join(lines), where=f"flow '{graph.name}'", hint="; ".join(hints))


def _logs_command(dep: Deployment, graph: FlowGraph, run_id: str, node: Node) -> str:
    """Where the failed step's whole log is: SAM's command for a function, lokki-sam's for Batch jobs."""
    if node.step.options.on_batch:
        return f"lokki-sam logs {run_id} --flow {graph.name} --step {node.id}"
    return f"sam logs -n {function_id(graph.name, node.step.name)} --stack-name {dep.stack_name}"


def retry_note(graph: FlowGraph, node: Node, reported: str, exception: str) -> str | None:
    """Why the step's Retry on an exception class did not retry, when the engine reported the
    exception under a generic name (ministack: `Runtime.HandlerError`) that its ErrorEquals
    cannot match; None when the retry applied or there is none."""
    from lokki_sam.compile.asl import error_names

    policy = node.step.options.retry
    if policy is None or policy.retries == 0 or reported not in GENERIC_ERRORS or exception in GENERIC_ERRORS:
        return None
    names = error_names(policy.exceptions, graph.module)
    if names == ["States.TaskFailed"] or exception not in names:
        return None
    declared = ", ".join(sorted(e.__name__ for e in policy.exceptions))
    return (
        f"the step's Retry on {declared} did not apply: this engine reported the {exception} as "
        f"{reported}, and a retrier matches the reported error name (ministack reports every Python exception "
        f"as Runtime.HandlerError; AWS and LocalStack report its class), so the step ran once instead of up to "
        f"{1 + policy.retries} times"
    )


def _item_record(
    dep: Deployment, graph: FlowGraph, run_id: str, failure: Failure, state: str | None, item: str | None
) -> dict[str, Any] | None:
    """The runtime's record of the failed map item(s) (the one of `item` if it has one), when the
    failure is about a map's items; None otherwise or without records."""
    block = _failed_map(graph, failure, state)
    if block is None:
        return None
    from lokki_sam.cloud.result import check_finished, run_context

    try:
        with aws_errors("reading the failed items' records"):
            ctx = run_context(graph, dep.store(graph.name), run_id, check_finished(dep, graph, run_id), None)
            records = failure_records(ctx, block)
    except LokkiError:  # a best-effort extra: the engine's account stands
        return None
    if item is not None and item.split("..")[0].isdigit():
        first = int(item.split("..")[0])
        records = [r for r in records if first in r["items"]] or records
    return records[0] if records else None


def _engine_faults(dep: Deployment, arn: str) -> EngineFaults | None:
    """What a local cloud of `lokki-sam emulator start` logged against the run (best effort)."""
    import os

    try:
        with aws_errors("reading the run's start"):
            since = dep.client("stepfunctions").describe_execution(executionArn=arn)["startDate"]
        return engine_faults(dep.aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"), since)
    except (LokkiError, KeyError, OSError, ValueError):
        return None


def _failed_map(graph: FlowGraph, failure: Failure, state: str | None) -> MapBlock | None:
    """The map whose items the failure is about: the map a failed body step belongs to, the map
    that failed, or the map an agg step found incomplete."""
    label = failure.map_label or state
    block = next((m for m in graph.maps if label in (m.id, map_label(m.id))), None)
    if block is not None:
        return block
    node = _node(graph, state)
    if node is None:
        return None
    if node.in_map is not None:
        found = graph.get(node.in_map)
        return found if isinstance(found, MapBlock) else None
    if failure.error == MAP_INCOMPLETE and node.input_from is not None:
        source = graph.get(node.input_from)
        return source if isinstance(source, MapBlock) else None
    return None


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
