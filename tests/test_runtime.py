"""The Lambda runtime on its own: environment, input resolution, refusals, cold-start imports."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lokki_sam import flow, names, runtime, step
from lokki_sam.errors import LokkiError, ParamError, StoreError
from lokki_sam.execution import MapIncomplete
from lokki_sam.store import S3Store
from tests.conftest import EXAMPLES
from tests.support.keys import Keys, function_env, prefix, stamped
from tests.support.moto_s3 import SharedS3, shared_s3

BUCKET = "artifacts"


@step
def make(n: int = 3, scale: float = 1.0) -> list[float]:
    return [i * scale for i in range(n)]


@step
def half(x: float) -> float:
    return x / 2


@step
def add(xs: list[float]) -> float:
    return sum(xs)


@flow
def rt_flow(n: int = 3, scale: float = 1.0):
    return make(n=n, scale=scale).map(half, batch_size=2).agg(add)


@flow
def rt_inline(n: int = 3):
    return make(n=n).map(half, mode="inline")


def env_for(graph_flow: Any, step_name: str, **overrides: str) -> dict[str, str]:
    return function_env(graph_flow, step_name, BUCKET, __name__, **overrides)


@pytest.fixture(scope="module")
def _s3() -> Iterator[SharedS3]:
    with shared_s3() as s3:
        yield s3


@pytest.fixture
def s3(_s3: SharedS3) -> Iterator[Any]:
    client = _s3.fresh(BUCKET)
    runtime.reset_cache()
    yield client
    runtime.reset_cache()


def store(s3: Any, graph_flow: Any) -> S3Store:
    return S3Store(BUCKET, prefix(graph_flow), s3)


def handle(event: dict[str, Any], env: dict[str, str], s3: Any) -> dict[str, Any]:
    """What the state machine sends: the event with its stamp (protocol version, fingerprints)."""
    flow_obj = {"rt_flow": rt_flow, "rt_inline": rt_inline}.get(env.get(names.ENV_FLOW, ""), rt_flow)
    return runtime.handle(stamped(flow_obj, event), env, s3)


# ------------------------------------------------------------------------------- happy paths


def test_source_writes_manifest_and_returns_its_location(s3: Any) -> None:
    out = handle({"node": "make", "run_id": "r1", "params": {"n": "5"}}, env_for(rt_flow, "make"), s3)
    manifest_key = f"{prefix(rt_flow)}/{Keys(rt_flow, 'r1', store(s3, rt_flow)).manifest('map-half')}"
    identity = Keys(rt_flow, "r1", store(s3, rt_flow)).identity("make")
    assert out == {"Bucket": BUCKET, "Key": manifest_key, "count": 5, "id": identity}
    assert manifest_key.startswith("lokki/teststack/rt_flow/r1/step=make/")
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=out["Key"])["Body"].read())
    assert [m["i"] for m in manifest] == [0, 1, 2, 3, 4]


def test_batch_and_single_items_and_agg_give_the_local_result(s3: Any) -> None:
    env = env_for(rt_flow, "make")
    handle({"node": "make", "run_id": "r2", "params": {"n": 5, "scale": 2}}, env, s3)
    manifest = store(s3, rt_flow).get_json(Keys(rt_flow, "r2", store(s3, rt_flow)).manifest("map-half"))
    ctx = {"run_id": "r2", "params": {"n": 5, "scale": 2}}
    half_env = env_for(rt_flow, "half")
    # An ItemBatcher batch (AWS) ...
    batch = {"Items": [dict(m, **ctx) for m in manifest[:2]], "BatchInput": ctx}
    assert handle({"node": "half", "map": "map-half", "input": batch}, half_env, s3)["items"] == 2
    # ... a batch without BatchInput (context taken from the items) ...
    batch = {"Items": [dict(m, **ctx) for m in manifest[2:4]]}
    handle({"node": "half", "map": "map-half", "input": batch}, half_env, s3)
    # ... and a single item (emulators that ignore ItemBatcher).
    handle({"node": "half", "map": "map-half", "input": dict(manifest[4], **ctx)}, half_env, s3)
    handle({"node": "add", "run_id": "r2", "params": {"n": 5, "scale": 2}}, env_for(rt_flow, "add"), s3)
    assert store(s3, rt_flow).get(Keys(rt_flow, "r2", store(s3, rt_flow)).task_output("add")) == sum(
        i * 2 / 2 for i in range(5)
    )


def test_agg_refuses_a_map_whose_items_lack_outputs_though_the_engine_went_on(s3: Any) -> None:
    """An engine that reports a Distributed Map as succeeded although items failed (LocalStack)
    must not give a silently shorter result: the agg step fails, naming the missing items."""
    params = {"n": 5}
    handle({"node": "make", "run_id": "r7", "params": params}, env_for(rt_flow, "make"), s3)
    manifest = store(s3, rt_flow).get_json(Keys(rt_flow, "r7", store(s3, rt_flow)).manifest("map-half"))
    half_env = env_for(rt_flow, "half")
    for item in manifest[:3]:  # items 3 and 4 "failed": they never stored an output
        event = {"node": "half", "map": "map-half", "input": dict(item, run_id="r7", params=params)}
        handle(event, half_env, s3)
    with pytest.raises(MapIncomplete, match=r"2 of 5 item\(s\) have no output of step 'half' \(items 3, 4\)"):
        handle({"node": "add", "run_id": "r7", "params": params}, env_for(rt_flow, "add"), s3)
    assert not store(s3, rt_flow).list_keys("r7/step=add/")  # nothing written, not even a pointer


def test_inline_map_source_returns_the_manifest_in_the_state(s3: Any) -> None:
    out = handle({"node": "make", "run_id": "r3", "params": {}}, env_for(rt_inline, "make"), s3)
    assert [(m["i"], m["c"]) for m in out["Items"]] == [(0, 0), (1, 0), (2, 0)]
    chunk = store(s3, rt_inline).get_sequence(Keys(rt_inline, "r3", store(s3, rt_inline)).items_chunk("map-half", 0))
    assert [m["d"] for m in out["Items"]] == chunk.digests  # each item carries its content digest


def test_params_default_and_coerce_like_local_runs(s3: Any) -> None:
    env = env_for(rt_flow, "make")
    handle({"node": "make", "run_id": "r4"}, env, s3)  # no params at all: defaults
    chunk = Keys(rt_flow, "r4", store(s3, rt_flow)).items_chunk("map-half", 0)
    assert store(s3, rt_flow).get_sequence(chunk).values == [0.0, 1.0, 2.0]
    handle({"node": "make", "run_id": "r5", "params": {"n": "2", "scale": "0.5"}}, env, s3)
    chunk = Keys(rt_flow, "r5", store(s3, rt_flow)).items_chunk("map-half", 0)
    assert store(s3, rt_flow).get_sequence(chunk).values == [0.0, 0.5]


def test_handler_reads_the_function_environment(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env_for(rt_flow, "make").items():
        monkeypatch.setenv(key, value)
    out = runtime.handler(stamped(rt_flow, {"node": "make", "run_id": "r6", "params": {"n": 1}}), None)
    assert out["count"] == 1


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"node": "make", "run_id": "r", "bucket": "other-bucket"}, "refusing bucket 'other-bucket'"),
        ({"node": "make", "run_id": "r", "prefix": "lokki/teststack/other_flow"}, "outside this function's prefix"),
        (
            {"node": "make", "run_id": "r", "key": "lokki/teststack/rt_x/r/m/output.pkl"},
            "outside this function's prefix",
        ),
        ({"node": "make", "run_id": "r", "key": "lokki/teststack/rt_flow/../other/x.pkl"}, "refusing store key"),
        ({"node": "make", "run_id": "../other_flow/r"}, "invalid run id"),
        ({"node": "make", "run_id": "a/b"}, "invalid run id"),
        ({"node": "half", "run_id": "r"}, "this function serves step 'make'"),
        ({"node": "nope", "run_id": "r"}, "has no step or map 'nope'"),
        ({"run_id": "r"}, "must name a node"),
        ({"node": "make", "run_id": "r", "params": [1, 2]}, "must be a JSON object of flow parameters"),
        ({"node": "make", "run_id": 7}, "run_id must be a string"),
    ],
)
def test_refuses_foreign_locations_and_misrouted_events(s3: Any, event: dict[str, Any], message: str) -> None:
    with pytest.raises(LokkiError, match=message):
        handle(event, env_for(rt_flow, "make"), s3)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # nothing was written


def test_refuses_unknown_params(s3: Any) -> None:
    with pytest.raises(ParamError, match="unknown parameter"):
        handle({"node": "make", "run_id": "r", "params": {"bogus": 1}}, env_for(rt_flow, "make"), s3)


def test_refuses_map_step_outside_its_map_and_bad_items(s3: Any) -> None:
    env = env_for(rt_flow, "half")
    with pytest.raises(LokkiError, match="not in map 'map-other'"):
        handle({"node": "half", "map": "map-other", "input": {}}, env, s3)
    with pytest.raises(LokkiError, match="malformed map item reference"):
        handle({"node": "half", "map": "map-half", "input": {"i": "0", "c": 0, "run_id": "r"}}, env, s3)
    with pytest.raises(LokkiError, match="non-empty 'Items'"):
        handle({"node": "half", "map": "map-half", "input": {"Items": []}}, env, s3)


def test_environment_must_be_complete_and_prefix_plain(s3: Any) -> None:
    env = env_for(rt_flow, "make")
    del env[names.ENV_BUCKET]
    with pytest.raises(LokkiError, match="LOKKI_BUCKET not set"):
        handle({"node": "make", "run_id": "r"}, env, s3)
    with pytest.raises(StoreError, match="refusing store key"):
        handle({"node": "make", "run_id": "r"}, env_for(rt_flow, "make", LOKKI_PREFIX="lokki/../x"), s3)
    with pytest.raises(LokkiError, match="has no flow 'missing'"):
        handle({"node": "make", "run_id": "r"}, env_for(rt_flow, "make", LOKKI_FLOW="missing"), s3)


# ------------------------------------------------------------------------------- cold start

COLD_START = """
import json, sys
sys.path.insert(0, sys.argv[1])
import lokki_sam.runtime as runtime
runtime.load_graph("birds", "birds")
light = sorted({m.split(".")[0] for m in sys.modules})
runtime.s3_client(region_name="us-east-1")
full = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"light": light, "full": full}))
"""

FORBIDDEN = {"click", "rich", "yaml", "moto", "samcli", "cookiecutter", "jinja2", "cfnlint", "pytest", "hypothesis"}
BOTO_STACK = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six", "certifi"}


def test_cold_start_imports_only_stdlib_lokki_core_the_flow_module_and_boto3() -> None:
    result = subprocess.run(
        [sys.executable, "-c", COLD_START, str(EXAMPLES)], capture_output=True, text=True, check=True, timeout=60
    )
    mods = json.loads(result.stdout)
    stdlib = set(sys.stdlib_module_names)
    # Before the first S3 client: nothing but the standard library, lokki_sam and the flow module
    # (names starting with "_" are interpreter/site hooks such as editable-install finders).
    extra = {m for m in mods["light"] if m not in stdlib and not m.startswith("_")}
    assert extra == {"lokki_sam", "birds"}
    assert not FORBIDDEN & set(mods["full"])
    assert BOTO_STACK & set(mods["full"]) >= {"boto3", "botocore"}


def test_graph_and_client_are_cached_across_warm_invocations(s3: Any) -> None:
    graph = runtime.load_graph(__name__, "rt_flow")
    assert runtime.load_graph(__name__, "rt_flow") is graph
    client = runtime._s3()
    assert runtime._s3() is client
    runtime.reset_cache()
    assert not runtime._graphs and runtime._s3() is not client


def test_a_task_event_for_a_map_step_is_refused_and_writes_nothing(s3: Any) -> None:
    """A map-body step runs only on map item events: a plain Task event naming it (no map, no data)
    used to run it with no input and write its output."""
    with pytest.raises(LokkiError, match="runs inside map 'map-half': it takes map item events, not a task event"):
        handle({"node": "half", "run_id": "r9", "params": {}}, env_for(rt_flow, "half"), s3)
    assert not store(s3, rt_flow).list_keys("r9/")
