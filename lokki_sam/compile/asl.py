"""FlowGraph -> Amazon States Language (one state machine definition per flow).

The state carries references and small control values only: `{"params": <execution input>}`
plus, after a map source ran, `{"items": {"Bucket", "Key", "count", "id"}}` (and the
manifest itself for an INLINE map). Every Task invokes the step's Lambda function through
`arn:aws:states:::lambda:invoke` with a payload naming the node; `lokki_sam.runtime` does the
rest with `lokki_sam.execution`, exactly as the local runner does. A Batch step's Task submits
its job and waits for it (`batch:submitJob.sync`), passing the same references in the job's
environment (`lokki_sam.batch.job`); inside a map, one job per child execution, that is per item
or, with `batch_size`, per ItemBatcher batch (the map keeps its per-item failure tolerance,
concurrency and resume; an array job would make the whole map one job that fails as one). The run id is the
execution name. Function ARNs and the bucket are `${...}` DefinitionSubstitutions (see
`substitution_names`), so one file serves `sam deploy` and the emulator tests.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from lokki_sam import names
from lokki_sam.batch import job
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.names import START_STATE, map_label, result_writer_prefix
from lokki_sam.options import Retry
from lokki_sam.protocol import PROTOCOL_VERSION, MapEvent, MapSourceResult, Stamp, TaskEvent

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
BATCH_SUBMIT_JOB = "arn:aws:states:::batch:submitJob.sync"
S3_SDK_GET_OBJECT = "arn:aws:states:::aws-sdk:s3:getObject"
S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"

# Transient Lambda service errors, retried on every Task (AWS's recommended retrier).
TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
TRANSIENT_RETRY: dict[str, Any] = {
    "ErrorEquals": list(TRANSIENT_ERRORS),
    "IntervalSeconds": 1,
    "MaxAttempts": 6,
    "BackoffRate": 2,
    "JitterStrategy": "FULL",
}

# A job Batch could not take (queue admission limits, throttling, its own faults): submit it again.
# A failed job is States.TaskFailed, never retried here: the step's Retry runs inside the job
# (lokki_sam/batch/entry.py), where the exception's class is known.
BATCH_TRANSIENT_RETRY: dict[str, Any] = {
    "ErrorEquals": ["Batch.AWSBatchException", "Batch.ServerException"],
    "IntervalSeconds": 2,
    "MaxAttempts": 6,
    "BackoffRate": 2,
    "JitterStrategy": "FULL",
}

# lokki-sam's own errors as the runtime raises them: retrying cannot fix them (see retry.py).
NEVER_RETRIED = (
    "ConfigError",
    "FlowDefinitionError",
    "FlowMismatch",
    "LokkiError",
    "MapIncomplete",
    "MapSourceError",
    "MissingOutput",
    "ParamError",
    "ProtocolError",
    "RuntimeConfigError",
    "SerializationError",
    "StepAborted",
    "StoreError",
    "StoreUnavailable",
)

# Context every Task needs: the run id (the parent execution's name) and the flow params.
RUN_ID = "$$.Execution.Name"
PARAMS = "$.params"
ITEMS = "$.items"
BATCH_RESULT_FIELD = "value"
BATCH_RESULT = f"{ITEMS}.{BATCH_RESULT_FIELD}"


def substitution_names(graph: FlowGraph) -> list[str]:
    """Exactly the `${...}` variables the definition uses, sorted (the bucket and the flow's
    prefix only with a distributed map): the template must supply each."""
    distributed = any(m.options.mode == "distributed" for m in graph.maps)
    # A Batch map source's result is read from the bucket, under the flow's prefix.
    batch_source = any(graph.node(m.source).step.options.on_batch for m in graph.maps)
    subs = {names.BUCKET_SUBSTITUTION, names.PREFIX_SUBSTITUTION} if distributed or batch_source else set()
    for step in graph.steps:
        if step.options.on_batch:
            subs.update(
                (
                    names.job_definition_substitution(graph.name, step.name),
                    names.job_queue_substitution(graph.name, step.name),
                )
            )
        else:
            subs.add(names.function_arn_substitution(graph.name, step.name))
    return sorted(subs)


def render(graph: FlowGraph) -> str:
    """The definition as deterministic JSON text (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(compile_flow(graph), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def compile_flow(graph: FlowGraph) -> dict[str, Any]:
    states: dict[str, Any] = {
        START_STATE: {
            "Type": "Pass",
            "Comment": "Keep the execution input (the flow params) under $.params; the runtime applies defaults",
            "Parameters": {"params.$": "$"},
        }
    }
    order = [START_STATE]
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            states[stage.id] = _map_state(graph, stage)
            order.append(stage.id)
            continue
        for name, state in _task_states(graph, stage):
            states[name] = state
            order.append(name)
    for current, following in itertools.pairwise(order):
        states[current]["Next"] = following
    states[order[-1]]["End"] = True
    definition: dict[str, Any] = {
        "Comment": f"lokki-sam flow '{graph.name}' ({graph.module}); generated, do not edit",
        "StartAt": START_STATE,
        "States": states,
    }
    return definition


# ------------------------------------------------------------------------------- tasks


def stamp(graph: FlowGraph, node: Node) -> Stamp:
    return Stamp(PROTOCOL_VERSION, graph.fingerprints.flow, graph.fingerprint(node.id))


def _invoke(graph: FlowGraph, node: Node, payload: dict[str, Any]) -> dict[str, Any]:
    arn = "${" + names.function_arn_substitution(graph.name, node.step.name) + "}"
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": arn, "Payload": payload},
        "Retry": retriers(node.step.options.retry, graph.module),
    }
    return state


def _task_states(graph: FlowGraph, node: Node) -> list[tuple[str, dict[str, Any]]]:
    """The states of a step outside maps. A map source's result (the manifest's location) goes
    to $.items: a Lambda returns it; a Batch job leaves it in the bucket for a second state."""
    fed = graph.map_fed_by(node.id)
    if node.step.options.on_batch:
        environment = job.asl_environment(node.id, None, stamp(graph, node), batched=False)
        state = _submit_job(graph, node, environment)
        state["ResultPath"] = None
        if fed is None:
            return [(node.id, state)]
        return [(node.id, state), (batch_result_state(node.id), _read_batch_result(node.id))]
    state = _invoke(graph, node, TaskEvent.asl_template(node.id, RUN_ID, PARAMS, stamp(graph, node)))
    if fed is None:
        state["ResultPath"] = None
    else:
        state["ResultSelector"] = MapSourceResult.result_selector(inline=fed.options.mode == "inline")
        state["ResultPath"] = ITEMS
    return [(node.id, state)]


def _submit_job(graph: FlowGraph, node: Node, environment: list[dict[str, str]]) -> dict[str, Any]:
    """A Batch step's Task: submit its job and wait for it (`.sync`), passing references only."""
    definition = "${" + names.job_definition_substitution(graph.name, node.step.name) + "}"
    return {
        "Type": "Task",
        "Resource": BATCH_SUBMIT_JOB,
        "Parameters": {
            "JobName": names.job_name(graph.name, node.id),
            "JobQueue": "${" + names.job_queue_substitution(graph.name, node.step.name) + "}",
            "JobDefinition": definition,
            "ContainerOverrides": {"Environment": environment},
        },
        "Retry": [dict(BATCH_TRANSIENT_RETRY)],
    }


def batch_result_state(node_id: str) -> str:
    """The state reading a Batch map source's result (a space: no node or map id has one)."""
    return f"{node_id} result"


def _read_batch_result(node_id: str) -> dict[str, Any]:
    """What the job left at `names.batch_result_key`, parsed, under $.items (as a Lambda's return)."""
    key = "${" + names.PREFIX_SUBSTITUTION + "}/" + names.batch_result_key("{}", node_id)
    return {
        "Type": "Task",
        "Resource": S3_SDK_GET_OBJECT,
        "Parameters": {
            "Bucket": "${" + names.BUCKET_SUBSTITUTION + "}",
            "Key.$": f"States.Format('{key}', {RUN_ID})",
        },
        "ResultSelector": {f"{BATCH_RESULT_FIELD}.$": "States.StringToJson($.Body)"},
        "ResultPath": ITEMS,
    }


def _items(graph: FlowGraph, block: MapBlock) -> str:
    """Where the map's source left its result: a Lambda's as it returned it, a Batch job's parsed."""
    return BATCH_RESULT if graph.node(block.source).step.options.on_batch else ITEMS


# -------------------------------------------------------------------------------- maps


def _map_state(graph: FlowGraph, block: MapBlock) -> dict[str, Any]:
    opts = block.options
    distributed = opts.mode == "distributed"
    context = MapEvent.context_template(RUN_ID, PARAMS, f"{_items(graph, block)}.id")
    body: dict[str, Any] = {}
    batched = distributed and opts.batch_size > 1
    for i, node in enumerate(block.nodes):
        # The child's input is one item (or a batch); each Task keeps it and passes it on.
        if node.step.options.on_batch:  # one job per child: per item, or per batch of items
            environment = job.asl_environment(node.id, block.id, stamp(graph, node), batched=batched)
            task = _submit_job(graph, node, environment)
        else:
            task = _invoke(graph, node, MapEvent.asl_template(node.id, block.id, stamp(graph, node)))
        task["ResultPath"] = None
        if i + 1 < len(block.nodes):
            task["Next"] = block.nodes[i + 1].id
        else:
            task["End"] = True
        body[node.id] = task
    processor: dict[str, Any] = {"StartAt": block.nodes[0].id, "States": body}
    if distributed:
        processor["ProcessorConfig"] = {"Mode": "DISTRIBUTED", "ExecutionType": opts.execution_type}
    else:
        processor["ProcessorConfig"] = {"Mode": "INLINE"}
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemProcessor": processor,
        # Every item gets its own reference plus the context: a distributed child is its own
        # execution, so $$.Execution.Name there would not be the run id.
        "ItemSelector": MapEvent.item_selector("$$.Map.Item.Value", context),
        # Item results live in the store; the Map's output must not grow with the item count.
        "ResultPath": None,
    }
    if distributed:
        bucket = "${" + names.BUCKET_SUBSTITUTION + "}"
        state["ItemReader"] = {
            "Resource": S3_GET_OBJECT,
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket": bucket, "Key.$": f"{_items(graph, block)}.Key"},
        }
        state["ResultWriter"] = {
            "Resource": S3_PUT_OBJECT,
            # Static: Step Functions adds a per-Map-Run folder under it. (A path here is
            # evaluated against the map's results by the emulators, not the state input.)
            "Parameters": {
                "Bucket": bucket,
                "Prefix": result_writer_prefix("${" + names.PREFIX_SUBSTITUTION + "}", block.id),
            },
        }
        state["Label"] = map_label(block.id)
        if opts.batch_size > 1:
            state["ItemBatcher"] = {"MaxItemsPerBatch": opts.batch_size, "BatchInput": context}
    else:
        state["ItemsPath"] = f"{_items(graph, block)}.Items"
    if opts.concurrency is not None:
        state["MaxConcurrency"] = opts.concurrency
    if opts.tolerated_failure is not None:
        # AWS takes a decimal percentage; asl-validator 4's schema insists on an integer, so
        # whole numbers are written as integers.
        state["ToleratedFailurePercentage"] = _number(opts.tolerated_failure)
    if opts.tolerated_failure_count is not None:
        state["ToleratedFailureCount"] = opts.tolerated_failure_count
    return state


# ------------------------------------------------------------------------------- retry


def retriers(policy: Retry | None, module: str) -> list[dict[str, Any]]:
    """The transient Lambda retrier, then the step's own (if any).

    The Python Lambda runtime reports a raised exception's class name as the error, so the
    step's exception classes become ErrorEquals names; `except OSError` semantics are kept by
    also listing subclasses: the built-in ones and those defined in the flow's module (the
    list stays deterministic whatever else is imported). `Exception`/`BaseException` become
    `States.TaskFailed` (any task error). ASL needs whole seconds >= 1: intervals round up.
    """
    result = [dict(TRANSIENT_RETRY)]
    if policy is None or policy.retries == 0:
        return result
    retrier: dict[str, Any] = {
        "ErrorEquals": error_names(policy.exceptions, module),
        "IntervalSeconds": max(1, math.ceil(policy.interval)),
        "MaxAttempts": policy.retries,
        "BackoffRate": _number(policy.backoff),
    }
    if policy.max_delay is not None:
        retrier["MaxDelaySeconds"] = max(1, math.ceil(policy.max_delay))
    if policy.jitter:
        retrier["JitterStrategy"] = "FULL"
    if retrier["ErrorEquals"] == ["States.TaskFailed"]:
        # States.TaskFailed matches every error, lokki-sam's own included; a local run never
        # retries those (bad params, foreign or corrupt artifacts), so the cloud must not either.
        result.append({"ErrorEquals": list(NEVER_RETRIED), "MaxAttempts": 0})
    result.append(retrier)
    return result


def error_names(exceptions: tuple[type[BaseException], ...], module: str) -> list[str]:
    if any(exc in (Exception, BaseException) for exc in exceptions):
        return ["States.TaskFailed"]
    found: set[str] = set()
    for exc in exceptions:
        found.add(exc.__name__)
        found.update(sub.__name__ for sub in _subclasses(exc) if sub.__module__ in ("builtins", module))
    return sorted(found)


def _subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    out: list[type[BaseException]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
