"""The ASL compiler: structure, retriers, determinism, and asl-validator on every definition."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import Retry, flow, names, step
from lokki_sam.compile import asl
from lokki_sam.graph import FlowGraph
from lokki_sam.loader import load_flows
from lokki_sam.protocol import PROTOCOL_VERSION
from tests.conftest import EXAMPLES, REPO
from tests.flows.shapes import SHAPES

VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"


def all_graphs() -> list[FlowGraph]:
    graphs = [f.graph for f, _, _ in SHAPES.values()]
    for path in sorted(EXAMPLES.glob("*.py")):
        graphs.extend(f.graph for f in load_flows(str(path)))
    return graphs


def tasks(definition: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for state in definition["States"].values():
        if state["Type"] == "Task":
            found.append(state)
        if state["Type"] == "Map":
            found.extend(tasks(state["ItemProcessor"]))
    return found


# ------------------------------------------------------------------------------ flows used here


class QuotaError(OSError):
    pass


@step
def items(n: int = 3) -> list[int]:
    return list(range(n))


@step(retry=Retry(retries=4, interval=0.2, backoff=1.5, max_delay=7.5, jitter=True, exceptions=(OSError,)))
def fetch(x: int) -> int:
    return x


@step(retry=Retry(retries=2, exceptions=(Exception,)))
def combine(xs: list[int]) -> int:
    return sum(xs)


@step(retry=0)
def plain(x: int) -> int:
    return x


@flow
def options_flow(n: int = 3):
    return (
        items(n=n)
        .map(fetch, batch_size=50, concurrency=7, tolerated_failure=12.0, tolerated_failure_count=3)
        .agg(combine)
    )


@flow
def express_flow(n: int = 3):
    return items(n=n).map(fetch, execution_type="EXPRESS").agg(combine)


@flow
def inline_flow(n: int = 3):
    return items(n=n).map(fetch, mode="inline", concurrency=2).next(plain)


# ------------------------------------------------------------------------------------ tests


def test_render_is_deterministic_sorted_json_with_trailing_newline() -> None:
    graph = SHAPES["maps_in_sequence"][0].graph
    text = asl.render(graph)
    assert text == asl.render(graph)
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_chain_of_tasks_in_flow_order_with_node_payloads() -> None:
    graph = SHAPES["reused_step"][0].graph
    d = asl.compile_flow(graph)
    order, state = [], d["StartAt"]
    while True:
        order.append(state)
        if d["States"][state].get("End"):
            break
        state = d["States"][state]["Next"]
    assert order == [asl.START_STATE, "start", "inc", "inc-2", "inc-3"]
    assert d["States"][asl.START_STATE]["Parameters"] == {"params.$": "$"}
    inc2 = d["States"]["inc-2"]
    assert inc2["Resource"] == "arn:aws:states:::lambda:invoke"
    # A reused step is one function, called with different node ids.
    assert inc2["Parameters"]["FunctionName"] == "${" + names.function_arn_substitution("reused_step", "inc") + "}"
    assert inc2["Parameters"]["Payload"] == {
        "node": "inc-2",
        "run_id.$": "$$.Execution.Name",
        "params.$": "$.params",
        "lokki": {"protocol": PROTOCOL_VERSION, "flow": graph.fingerprints.flow, "step": graph.fingerprint("inc-2")},
    }
    assert inc2["ResultPath"] is None  # results stay in the store, the state stays small


def test_distributed_map_reads_the_manifest_and_keeps_results_out_of_the_state() -> None:
    d = asl.compile_flow(options_flow.graph)
    source = d["States"]["items"]
    assert source["ResultPath"] == "$.items"
    assert source["ResultSelector"] == {
        "Bucket.$": "$.Payload.Bucket",
        "Key.$": "$.Payload.Key",
        "count.$": "$.Payload.count",
        "id.$": "$.Payload.id",
    }
    m = d["States"]["map-fetch"]
    assert m["Type"] == "Map" and m["Next"] == "combine"
    assert m["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert m["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket": "${ArtifactBucketName}", "Key.$": "$.items.Key"},
    }
    assert m["ItemSelector"] == {
        "i.$": "$$.Map.Item.Value.i",
        "c.$": "$$.Map.Item.Value.c",
        "d.$": "$$.Map.Item.Value.d",
        "run_id.$": "$$.Execution.Name",
        "params.$": "$.params",
        "source.$": "$.items.id",
    }
    assert m["ItemBatcher"] == {
        "MaxItemsPerBatch": 50,
        "BatchInput": {"run_id.$": "$$.Execution.Name", "params.$": "$.params", "source.$": "$.items.id"},
    }
    assert m["ResultWriter"] == {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": "${ArtifactBucketName}", "Prefix": "${ArtifactPrefix}/_resultwriter/map-fetch"},
    }
    assert m["ResultPath"] is None
    assert (m["MaxConcurrency"], m["ToleratedFailurePercentage"], m["ToleratedFailureCount"]) == (7, 12, 3)
    body = m["ItemProcessor"]["States"]["fetch"]
    stamp = {
        "protocol": PROTOCOL_VERSION,
        "flow": options_flow.graph.fingerprints.flow,
        "step": options_flow.graph.fingerprint("fetch"),
    }
    assert body["Parameters"]["Payload"] == {"node": "fetch", "map": "map-fetch", "input.$": "$", "lokki": stamp}
    assert body["End"] is True and body["ResultPath"] is None


def test_unbatched_map_has_no_item_batcher_and_express_children_are_configurable() -> None:
    m = asl.compile_flow(express_flow.graph)["States"]["map-fetch"]
    assert "ItemBatcher" not in m and "MaxConcurrency" not in m
    assert m["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "EXPRESS"


def test_inline_map_iterates_the_manifest_returned_in_the_state() -> None:
    d = asl.compile_flow(inline_flow.graph)
    assert d["States"]["items"]["ResultSelector"]["Items.$"] == "$.Payload.Items"
    m = d["States"]["map-fetch"]
    assert m["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}
    assert m["ItemsPath"] == "$.items.Items"
    assert "ItemReader" not in m and "ResultWriter" not in m and "ItemBatcher" not in m
    assert m["MaxConcurrency"] == 2 and m["End"] is True
    assert list(m["ItemProcessor"]["States"]) == ["fetch", "plain"]
    assert asl.substitution_names(inline_flow.graph) == [
        "InlineFlowFetchFunctionArn",
        "InlineFlowItemsFunctionArn",
        "InlineFlowPlainFunctionArn",
    ]


def test_every_task_retries_transient_lambda_errors() -> None:
    for graph in all_graphs():
        for task in tasks(asl.compile_flow(graph)):
            assert task["Retry"][0]["ErrorEquals"] == list(asl.TRANSIENT_ERRORS), graph.name


def test_step_retry_becomes_a_retrier_with_python_semantics() -> None:
    d = asl.compile_flow(options_flow.graph)
    fetch_retry = d["States"]["map-fetch"]["ItemProcessor"]["States"]["fetch"]["Retry"]
    assert len(fetch_retry) == 2
    user = fetch_retry[1]
    assert user["MaxAttempts"] == 4  # retries, not retries + 1
    assert user["IntervalSeconds"] == 1  # 0.2 s rounded up to ASL's whole-second minimum
    assert user["BackoffRate"] == 1.5 and user["MaxDelaySeconds"] == 8 and user["JitterStrategy"] == "FULL"
    errors = user["ErrorEquals"]
    # `except OSError` semantics: built-in subclasses and the flow module's own subclasses.
    assert {"OSError", "ConnectionError", "ConnectionResetError", "FileNotFoundError", "TimeoutError"} <= set(errors)
    assert "QuotaError" in errors and errors == sorted(errors)
    assert "ValueError" not in errors
    combine_retry = d["States"]["combine"]["Retry"]
    assert combine_retry[1]["MaxAttempts"] == 0  # lokki-sam's own errors are never retried
    assert combine_retry[2]["ErrorEquals"] == ["States.TaskFailed"]
    assert combine_retry[2]["MaxAttempts"] == 2 and "JitterStrategy" not in combine_retry[2]
    assert asl.compile_flow(inline_flow.graph)["States"]["map-fetch"]["ItemProcessor"]["States"]["plain"]["Retry"] == [
        asl.TRANSIENT_RETRY
    ]


def test_substitution_names_are_exactly_those_used() -> None:
    for graph in all_graphs():
        used = sorted(set(re.findall(r"\$\{([A-Za-z0-9]+)\}", asl.render(graph))))
        assert asl.substitution_names(graph) == used, graph.name
        for s in graph.steps:
            assert names.function_arn_substitution(graph.name, s.name) in used


def test_payloads_carry_references_only() -> None:
    """No Task payload embeds data: only node/map ids, the run id, the params, item refs and the stamp."""
    allowed = {"node", "map", "run_id.$", "params.$", "input.$", "lokki"}
    for graph in all_graphs():
        for task in tasks(asl.compile_flow(graph)):
            assert set(task["Parameters"]["Payload"]) <= allowed


# ------------------------------------------------------------------------------ asl-validator


def validator() -> Path:
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} is missing: run `npm ci` in {REPO} (package.json pins asl-validator)")
    return VALIDATOR


def validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    args = [str(validator())]
    for path in paths:
        args += ["--json-path", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_asl_validator_accepts_every_generated_definition(tmp_path: Path) -> None:
    paths = []
    graphs = [*all_graphs(), options_flow.graph, express_flow.graph, inline_flow.graph, *batch_graphs()]
    for graph in graphs:
        path = tmp_path / f"{graph.module}.{graph.name}.asl.json"
        path.write_text(asl.render(graph))
        paths.append(path)
    result = validate(paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("is valid") == len(paths)


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda d: d["States"]["map-square"].__setitem__("Next", "nowhere"), id="dangling-next"),
        pytest.param(lambda d: d.__setitem__("StartAt", "missing"), id="bad-start"),
        pytest.param(
            lambda d: d["States"]["map-square"]["ItemProcessor"]["ProcessorConfig"].__setitem__("Mode", "PARALLEL"),
            id="bad-enum",
        ),
    ],
)
def test_asl_validator_rejects_a_broken_definition(tmp_path: Path, breakage: Any) -> None:
    definition = asl.compile_flow(SHAPES["map_agg"][0].graph)
    breakage(definition)
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(definition))
    result = validate([path])
    assert result.returncode != 0, result.stdout


def test_retry_on_any_exception_never_retries_lokki_sams_own_errors() -> None:
    """States.TaskFailed matches everything; lokki-sam's own errors are stopped before it,
    as the local runner never retries them."""
    import lokki_sam.errors
    import lokki_sam.execution
    import lokki_sam.runtime
    from lokki_sam import Retry
    from lokki_sam.compile.asl import NEVER_RETRIED, retriers

    rules = retriers(Retry(retries=2, exceptions=(Exception,)), "m")
    assert [r["ErrorEquals"] for r in rules[1:]] == [list(NEVER_RETRIED), ["States.TaskFailed"]]
    assert rules[1]["MaxAttempts"] == 0
    raised_by_runtime = {
        cls.__name__
        for module in (lokki_sam.errors, lokki_sam.execution, lokki_sam.runtime)
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, lokki_sam.errors.LokkiError)
        and not issubclass(cls, lokki_sam.errors.StepFailed)
    }
    assert raised_by_runtime <= set(NEVER_RETRIED)
    # A specific exception list needs no such guard.
    assert [r["ErrorEquals"] for r in retriers(Retry(exceptions=(KeyError,)), "m")[1:]] == [["KeyError"]]


# ------------------------------------------------------------------------------ AWS Batch steps


def batch_graphs() -> list[Any]:
    from tests.flows import batch_mixed

    return [batch_mixed.batch_mixed.graph, batch_mixed.batch_single.graph]


def test_batch_steps_submit_a_job_and_wait_passing_references_only() -> None:
    """Parameter names are SubmitJob's as Step Functions takes them; the job's environment holds
    the node, the run (execution name), the params and the items as paths, never data."""
    from lokki_sam.batch import job

    graph = batch_graphs()[0]
    definition = asl.compile_flow(graph)
    states = definition["States"]
    total = states["total"]
    assert total["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    params = total["Parameters"]
    # The keys SubmitJob accepts from Step Functions (ArrayProperties, ContainerOverrides, DependsOn,
    # JobDefinition, JobName, JobQueue, Parameters, RetryStrategy, Timeout, Tags).
    assert set(params) == {"JobName", "JobQueue", "JobDefinition", "ContainerOverrides"}
    assert params["JobQueue"] == "${BatchMixedTotalJobQueueArn}"  # per step: the template picks its queue
    assert params["JobDefinition"] == "${BatchMixedTotalJobDefinitionArn}"
    env = {e["Name"]: e.get("Value", e.get("Value.$")) for e in params["ContainerOverrides"]["Environment"]}
    assert env[job.ENV_NODE] == "total" and env[job.ENV_RUN_ID] == "$$.Execution.Name"
    assert env[job.ENV_PARAMS] == "States.JsonToString($.params)"
    assert json.loads(env[job.ENV_STAMP]) == asl.stamp(graph, graph.node("total")).to_json()
    assert total["Retry"][0]["ErrorEquals"] == ["Batch.AWSBatchException", "Batch.ServerException"]
    assert total["ResultPath"] is None and total["End"] is True
    # A Batch map source: its job leaves the manifest's location; the next state reads it into $.items.
    assert states["numbers"]["Next"] == "numbers result"
    reader = states["numbers result"]
    assert reader["Resource"] == "arn:aws:states:::aws-sdk:s3:getObject" and reader["ResultPath"] == "$.items"
    assert reader["Parameters"]["Key.$"] == (
        "States.Format('${ArtifactPrefix}/_batch/{}/numbers.json', $$.Execution.Name)"
    )
    assert states["map-square"]["ItemReader"]["Parameters"]["Key.$"] == "$.items.value.Key"
    # ... and the identity of the source's output, which every item carries, is there too.
    assert states["map-square"]["ItemSelector"]["source.$"] == "$.items.value.id"
    assert states["map-square"]["ItemBatcher"]["BatchInput"]["source.$"] == "$.items.value.id"
    # In a batched map body: one job per batch, its items listed by index from the batch.
    shift = states["map-square"]["ItemProcessor"]["States"]["shift"]
    env = {
        e["Name"]: e.get("Value", e.get("Value.$")) for e in shift["Parameters"]["ContainerOverrides"]["Environment"]
    }
    assert env[job.ENV_ITEMS] == "States.JsonToString($.Items[*].i)"
    assert env[job.ENV_RUN_ID] == "$.BatchInput.run_id" and env[job.ENV_MAP] == "map-square"
    assert states["map-square"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    assert asl.substitution_names(graph) == [
        "ArtifactBucketName",
        "ArtifactPrefix",
        "BatchMixedNumbersJobDefinitionArn",
        "BatchMixedNumbersJobQueueArn",
        "BatchMixedShiftJobDefinitionArn",
        "BatchMixedShiftJobQueueArn",
        "BatchMixedSquareFunctionArn",
        "BatchMixedTotalJobDefinitionArn",
        "BatchMixedTotalJobQueueArn",
    ]
