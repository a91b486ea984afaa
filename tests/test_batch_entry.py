"""The Batch job's entry point (`python -m lokki_sam.batch`): the Task state's environment becomes
the Lambda handler's event, and the step runs through `runtime.handle` on the same store and keys.

Runs against moto's in-process S3, driving the nodes in the order and with the payloads the state
machine would (a Batch map source, map batches of two items, a Batch aggregation)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import execution, layout, names, runlog, runtime
from lokki_sam.batch import entry, job
from lokki_sam.execution import RunContext
from lokki_sam.protocol import ItemRef, MapEvent, Stamp, TaskEvent
from lokki_sam.store import S3Store
from tests.flows import batch_mixed
from tests.support.keys import function_env, prefix, stamped
from tests.support.moto_s3 import SharedS3, shared_s3

BUCKET = "batch-artifacts"
FLOW = batch_mixed.batch_mixed


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedS3]:
    with shared_s3() as s3:
        yield s3


@pytest.fixture
def s3(shared: SharedS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # In-process jobs: keep pytest's log handlers (a job process installs its JSON lines once, on
    # a stdout that here would be one test's capture, closed by the next test).
    monkeypatch.setattr(runlog, "_configured", True)
    runtime.reset_cache()
    yield shared.fresh(BUCKET)
    runtime.reset_cache()


def env_of(node_id: str, event: dict[str, Any] | None = None) -> dict[str, str]:
    step = FLOW.graph.node(node_id).step.name
    env = function_env(FLOW, step, BUCKET)
    return {**env, **job.environment_for(stamped(FLOW, event))} if event is not None else env


def run_node(node_id: str, event: dict[str, Any], s3: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A Batch node through the job's entry point (its exit code and stderr), a Lambda node
    through the handler, as the state machine would start each."""
    node = FLOW.graph.node(node_id)
    if not node.step.options.on_batch:
        runtime.handle(stamped(FLOW, event), env_of(node_id), client=s3)
        return 0, ""
    code = entry.main(env_of(node_id, event))
    return code, capsys.readouterr().err


def drive(run_id: str, params: dict[str, Any], s3: Any, capsys: pytest.CaptureFixture[str]) -> list[tuple[int, str]]:
    """Every node of the flow, as a Step Functions execution named `run_id` would run it."""
    outcomes = [run_node("numbers", TaskEvent("numbers", run_id, params).to_payload(), s3, capsys)]
    left = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"{prefix(FLOW)}/{names.batch_result_key(run_id, 'numbers')}")["Body"].read()
    )
    refs = [
        ItemRef.parse(item) for item in json.loads(s3.get_object(Bucket=left["Bucket"], Key=left["Key"])["Body"].read())
    ]
    assert len(refs) == left["count"] == params["n"]
    for first in range(0, len(refs), 2):  # batch_size=2: one child execution per two items
        batch = tuple(refs[first : first + 2])
        for node in ("square", "shift"):
            event = MapEvent(node, "map-square", batch, run_id, params).to_payload(batched=True)
            outcomes.append(run_node(node, event, s3, capsys))
    outcomes.append(run_node("total", TaskEvent("total", run_id, params).to_payload(), s3, capsys))
    return outcomes


def result(run_id: str, params: dict[str, Any], s3: Any) -> Any:
    ctx = RunContext(FLOW.graph, S3Store(BUCKET, prefix(FLOW), s3), run_id, params)
    return execution.read_result(ctx)


def test_a_flow_with_batch_steps_runs_through_the_entry_point_on_the_lambda_keys(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    params = {"n": 5, "offset": 3, "label": "total"}
    outcomes = drive("r1", params, s3, capsys)
    assert all(code == 0 for code, _ in outcomes), outcomes
    assert result("r1", params, s3) == f"total={sum(x * x + 3 for x in range(5))}"
    # Same store, same keys: every output under the identity it was computed from, as a Lambda step writes it.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    store = S3Store(BUCKET, prefix(FLOW), s3)
    total = store.get_json(layout.pointer("r1", "total"))["id"]
    assert f"{prefix(FLOW)}/r1/step=total/{total}/output.pkl" in keys
    assert any(k.startswith(f"{prefix(FLOW)}/r1/step=shift/00000000-00000001-") for k in keys)


def test_a_failing_step_exits_1_with_the_users_traceback(
    s3: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOKKI_TEST_FAIL_ON", "9")
    params = {"n": 5, "offset": 1, "label": "sum"}
    outcomes = drive("r2", params, s3, capsys)[:-1]  # the aggregation would find item 3 missing
    failed = [(code, err) for code, err in outcomes if code != 0]
    assert len(failed) == 1 and failed[0][0] == 1, outcomes
    err = failed[0][1]
    assert err.startswith("Traceback (most recent call last):") and err.rstrip().endswith(
        "ValueError: 9 is not allowed"
    )
    assert "batch_mixed.py" in err and "lokki_sam" not in err


def test_the_steps_retry_runs_inside_the_job(
    s3: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOKKI_TEST_FLAKY", str(tmp_path / "flaky"))
    params = {"n": 2, "offset": 1, "label": "sum"}
    outcomes = drive("r3", params, s3, capsys)
    assert all(code == 0 for code, _ in outcomes), outcomes
    assert result("r3", params, s3) == "sum=3"
    assert (tmp_path / "flaky").read_text() == "failed once"


def test_lokki_sams_own_refusals_exit_2(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    event = stamped(FLOW, TaskEvent("total", "r4", {}).to_payload())
    event["lokki"] = {**event["lokki"], "flow": "another-version"}
    env = {**env_of("total"), **job.environment_for(event)}
    assert entry.main(env) == 2
    assert "error: flow 'batch_mixed': the state machine was generated from another version" in capsys.readouterr().err
    del env[job.ENV_NODE]
    assert entry.main(env) == 2
    assert "LOKKI_NODE not set" in capsys.readouterr().err
    assert entry.main({**env, job.ENV_NODE: "total", job.ENV_PARAMS: "{not json"}) == 2
    assert "LOKKI_PARAMS is not JSON" in capsys.readouterr().err


D2, D3, SRC = "2" * 32, "3" * 32, "5" * 32  # item digests and a source identity, as the manifest has them


@pytest.mark.parametrize(
    "event",
    [
        TaskEvent("total", "r5.resume-1", {"n": 2, "when": [1, "a"]}).to_payload(),
        MapEvent("shift", "map-square", (ItemRef(3, 2, D3),), "r5", {"n": 4}, SRC).to_payload(batched=False),
        MapEvent("shift", "map-square", (ItemRef(2, 2, D2), ItemRef(3, 2, D3)), "r5", {}).to_payload(batched=True),
        MapEvent("shift", "map-square", (ItemRef(2, 2, None),), "r5", {}).to_payload(batched=False),
    ],
    ids=["task", "one item", "batch", "item without its digest"],
)
def test_the_environment_stands_for_exactly_the_handlers_event(event: dict[str, Any]) -> None:
    """What the handler reads from the rebuilt event is what it reads from the state machine's
    (a batch's items carry the context once, in BatchInput, instead of once per item)."""
    event = stamped(FLOW, event)
    rebuilt = job.event_from_environment(job.environment_for(event))
    assert Stamp.parse(rebuilt) == Stamp.parse(event)
    if MapEvent.is_map_event(event):
        assert MapEvent.parse(rebuilt) == MapEvent.parse(event)
    else:
        assert TaskEvent.parse(rebuilt) == TaskEvent.parse(event)
