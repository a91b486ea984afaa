"""`lokki-sam plan` counts what the cloud run does, exactly: proven against moto's Step Functions
interpreter running the real handler (tests/support/moto_sfn.py) for every shape in tests/flows.

What the emulator counts, and what plan must equal:
- Lambda invocations and the handler's S3 requests (Counters.invocations / s3_requests);
- billed state transitions: every `*StateEntered` of the parent's history, plus, per Distributed
  Map child, the transition that starts it and the states it enters (Counters.child_executions /
  child_states_entered: moto keeps child histories out of its API);
- the parent's history events (get_execution_history).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokki_sam import Retry, flow, layout, names, runtime, step
from lokki_sam.compile import asl
from lokki_sam.config import Config, load_config
from lokki_sam.ir import FlowGraph
from lokki_sam.plan import Plan, PlanError, make_plan, parse_items, prices, render
from lokki_sam.plan.sizing import manifest_bytes
from lokki_sam.serialization import DIGEST_LENGTH
from lokki_sam.store import ArtifactStore, LocalStore
from tests.flows.modes import glue, inline_chain, inline_open, letters, twice
from tests.flows.shapes import SHAPES
from tests.support.keys import STACK, function_env, stamped
from tests.support.moto_sfn import BUCKET, Cloud, moto_cloud

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(tmp_path, environ={})  # defaults: 512 MB, 300 s, arm64


def plan_of(f: Any, params: dict[str, Any], config: Config, *items: str, **kwargs: Any) -> Plan:
    kwargs.setdefault("stack_name", STACK)
    return make_plan(f.graph, params, items, config=config, **kwargs)


# ------------------------------------------------------------------------------------ flows


@flow
def express_children(n: int = 5):
    return letters(n=n).map(twice, execution_type="EXPRESS", batch_size=2).next(twice).agg(glue)


@step
def failing_source(n: int = 3) -> list[int]:
    raise ValueError("the source is broken")


@flow
def broken(n: int = 3):
    return failing_source(n=n).map(twice).agg(glue)


@step
def nap(x: int, seconds: float = 0.02) -> int:
    time.sleep(seconds)
    return x


@step(memory=1024, architecture="x86_64")
def heavy_nap(x: int, seconds: float = 0.02) -> int:
    time.sleep(seconds)
    return x


@step
def few(n: int = 4) -> list[int]:
    return list(range(n))


@step
def add(xs: list[int]) -> int:
    return sum(xs)


@flow
def napping(n: int = 4, seconds: float = 0.02):
    return few(n=n).map(nap, execution_type="EXPRESS", batch_size=2).next(heavy_nap).agg(add)


ATTEMPTS: dict[str, int] = {}


@step(retry=Retry(retries=2, interval=0, exceptions=(ConnectionError,)))
def flaky_source(n: int = 3) -> list[int]:
    ATTEMPTS["source"] = ATTEMPTS.get("source", 0) + 1
    if ATTEMPTS["source"] == 1:
        raise ConnectionError("the first call drops")
    return list(range(n))


@step(retry=Retry(retries=1, interval=0, exceptions=(ConnectionError,)))
def flaky_item(x: int) -> int:
    key = f"item-{x}"
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if x == 99:
        raise ValueError("not retried: not a ConnectionError")
    if ATTEMPTS[key] == 1 or x < 0:
        raise ConnectionError(f"item {x}: the call drops")
    return x


@step
def plus(xs: list[int], extra: int = 0) -> list[int]:
    return [*xs, extra] if extra else xs


@flow
def flaky(n: int = 3, extra: int = 0):
    return flaky_source(n=n).next(plus, extra=extra).map(flaky_item).agg(add)


# ------------------------------------------------------------------- proof: the emulator agrees


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with moto_cloud() as c:
        yield c


def observe(cloud: Cloud, graph: FlowGraph, params: dict[str, Any]) -> dict[str, int]:
    """Run on moto; what it counted for this execution."""
    c = cloud.counters
    before = (c.invocations, c.s3_requests, c.child_executions, c.child_states_entered)
    ex = cloud.execute(graph, params)
    assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
    history = cloud.history(ex.arn)
    parent_entered = sum(1 for e in history if e["type"].endswith("StateEntered"))
    children = c.child_executions - before[2]
    return {
        "lambda_invocations": c.invocations - before[0],
        "s3_requests": c.s3_requests - before[1],
        "state_transitions": parent_entered + children + (c.child_states_entered - before[3]),
        "history_events": len(history),
        "children": children,
    }


def planned(plan: Plan) -> dict[str, int]:
    return {
        "lambda_invocations": plan.lambda_invocations,
        "s3_requests": plan.s3_requests,
        "state_transitions": plan.state_transitions,
        "history_events": plan.history_events,
        "children": sum(s.children or 0 for s in plan.stages),
    }


EXTRA = {
    "inline_chain": (inline_chain, {"n": 4}),
    "inline_open": (inline_open, {}),
    "map_agg, empty": (SHAPES["map_agg"][0], {"n": 0}),
    "batched, empty": (SHAPES["batched"][0], {"n": 0}),
    "open_map, empty": (SHAPES["open_map"][0], {"n": 0}),
    "batched, 1001 items": (SHAPES["batched"][0], {"n": 1001}),
}
CASES = {name: (f, params) for name, (f, params, _) in SHAPES.items()} | EXTRA


@pytest.mark.emulator
@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_counts_equal_the_emulators_for_every_shape(cloud: Cloud, name: str, config: Config) -> None:
    f, params = CASES[name]
    plan = plan_of(f, params, config)
    assert planned(plan) == observe(cloud, f.graph, params)
    assert not plan.exceeded


@pytest.mark.emulator
def test_plan_from_items_equals_the_emulator_for_small_items(cloud: Cloud, config: Config) -> None:
    """--items 250 runs nothing locally; for small items its chunk estimate is the store's chunking."""
    f = SHAPES["batched"][0]
    plan = plan_of(f, {"n": 3}, config, "250")  # the source would make 3 items: --items wins
    assert plan.sizes["map-square"].estimated
    observed = observe(cloud, f.graph, {"n": 250})
    assert planned(plan) == observed


@pytest.mark.emulator
def test_express_children_bill_requests_instead_of_their_states(cloud: Cloud, config: Config) -> None:
    """moto runs only STANDARD children (docs/cloud.md); the Lambda and S3 side does not depend
    on the child type, and EXPRESS children bill no transitions for the states they enter."""
    graph = express_children.graph
    definition = asl.compile_flow(graph)
    definition["States"]["map-twice"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    cloud.deploy(graph, definition=definition)
    observed = observe(cloud, graph, {"n": 5})
    plan = plan_of(express_children, {"n": 5}, config)
    got = planned(plan)
    assert got["lambda_invocations"] == observed["lambda_invocations"] == 1 + 3 * 2 + 1
    assert got["s3_requests"] == observed["s3_requests"]
    assert got["history_events"] == observed["history_events"]
    body_states = observed["children"] * 2
    assert got["state_transitions"] == observed["state_transitions"] - body_states
    mapped = next(s for s in plan.stages if s.id == "map-twice")
    assert (mapped.children, mapped.express_requests) == (3, 3)


@pytest.mark.emulator
def test_handler_lists_outputs_in_pages_of_1000_as_planned(cloud: Cloud, config: Config) -> None:
    """An agg after 1,001 map children: two LIST pages. Driven through the real handler on moto S3
    (a Step Functions run of 1,001 children takes minutes in moto), stage by stage."""
    f = SHAPES["map_agg"][0]
    graph, run_id, n = f.graph, "map_agg-paging-1", 1001
    plan = plan_of(f, {"n": n}, config)
    by_stage = {s.id: s.s3_requests for s in plan.stages}

    def call(step_name: str, event: dict[str, Any]) -> int:
        before = cloud.counters.s3_requests
        runtime.handle(stamped(f, event), function_env(graph, step_name, BUCKET), client=cloud.runtime_s3)
        return cloud.counters.s3_requests - before

    params = {"n": n}
    assert call("numbers", {"node": "numbers", "run_id": run_id, "params": params}) == by_stage["numbers"]
    store = cloud.store(graph)
    refs = json.loads(store.get_bytes(graph_key(graph, run_id, store)))
    source = store.get_json(layout.pointer(run_id, "numbers"))["id"]  # what the ItemSelector passes
    context = {"run_id": run_id, "params": params, "source": source}
    body = sum(call("square", {"node": "square", "map": "map-square", "input": {**ref, **context}}) for ref in refs)
    assert body == by_stage["map-square"] == 2 * n
    agg = call("total", {"node": "total", "run_id": run_id, "params": params})
    # 2 LIST pages, n outputs, the source's pointer and manifest, the result and its pointer
    assert agg == by_stage["total"] == 2 + n + 2 + 2


def graph_key(graph: FlowGraph, run_id: str, store: ArtifactStore) -> str:
    return layout.manifest(run_id, "numbers", store.get_json(layout.pointer(run_id, "numbers"))["id"])


@pytest.mark.emulator
def test_bench_cloud_map_agrees_with_plan(config: Config) -> None:
    """bench/cloud_map.py as published (docs/cloud.md's table): 2,000 items in batches of 100,
    run in its own moto; its printed row against plan for the same flow."""
    bench = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cloud_map.py"), "--items", "2000", "--batch-sizes", "100"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert bench.returncode == 0, bench.stderr
    row = next(line for line in bench.stdout.splitlines() if line.startswith("| 100 |"))
    _, children, invocations, s3, transitions, events, _ = (c.strip() for c in row.strip("|").split("|"))
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import cloud_map
    finally:
        sys.path.remove(str(REPO / "bench"))
    plan = plan_of(cloud_map.make_flow(100, 64), {"n": 2000}, config)
    assert plan.lambda_invocations == int(invocations) == 22
    assert plan.s3_requests == int(s3)
    assert plan.history_events == int(events) == 20
    # The bench counts parent states + one Task per child; AWS also bills each child's start.
    assert plan.state_transitions == int(transitions) + int(children) == 44


# ------------------------------------------------------------------------------- the model


@pytest.mark.parametrize(("n", "batch"), [(0, 1), (1, 1), (7, 1), (250, 20), (2500, 100), (12_345, 1)])
def test_manifest_size_is_what_the_store_writes(n: int, batch: int, tmp_path: Path, config: Config) -> None:
    f = SHAPES["batched"][0] if batch > 1 else SHAPES["map_agg"][0]
    plan = plan_of(f, {"n": n}, config)
    chunk = max(batch, (1000 // batch) * batch)  # small ints: the store's chunk_size
    assert plan.sizes[f.graph.maps[0].id].manifest_bytes == manifest_bytes(n, chunk)
    store = LocalStore(tmp_path)
    entries = [{"i": i, "c": i - i % chunk, "d": "0" * DIGEST_LENGTH} for i in range(n)]
    store.put_json("m.json", entries)
    assert len(store.get_bytes("m.json")) == manifest_bytes(n, chunk)


def per_item_manifest_bytes(n: int, chunk: int) -> int:
    """The manifest's length counted item by item, as plan did before its closed form."""
    if n == 0:
        return 2
    digits = sum(len(str(i)) + len(str(layout.chunk_start(i, chunk))) for i in range(n))
    return 2 + n * (len('{"c":,"d":"","i":}') + DIGEST_LENGTH) + digits + (n - 1)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 30_000), chunk=st.integers(1, 5_000))
def test_closed_form_manifest_size_equals_the_per_item_count(n: int, chunk: int) -> None:
    assert manifest_bytes(n, chunk) == per_item_manifest_bytes(n, chunk)


@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 99, 100, 999, 1000, 1001, 9999, 10_000, 100_001])
@pytest.mark.parametrize("chunk", [1, 7, 10, 100, 999, 1000])
def test_closed_form_manifest_size_at_the_digit_boundaries(n: int, chunk: int) -> None:
    assert manifest_bytes(n, chunk) == per_item_manifest_bytes(n, chunk)


def digits_below_power_of_ten(k: int) -> int:
    """sum(len(str(i)) for i in range(10**k)): 0, then 9 * 10**(d-1) numbers of d digits."""
    return 1 + sum(9 * 10 ** (d - 1) * d for d in range(1, k + 1))


@pytest.mark.parametrize("k", [8, 12])
def test_plan_of_10_to_the_k_items_is_computed_in_closed_form(k: int, config: Config) -> None:
    """ReaderConfig.MaxItems is 10**8; far larger sizes are planned too (over the limit)."""
    n = 10**k
    f = SHAPES["map_agg"][0]  # numbers -> squares (one item per child) -> total
    plan = plan_of(f, {"n": 3}, config, f"{n}")
    size = plan.sizes["map-square"]
    assert (size.items, size.chunks) == (n, n // 1000)
    # Every chunk is full: chunk c starts at c * 1000, whose digits are c's and three zeros (c > 0).
    starts = 1000 * (1 + digits_below_power_of_ten(k - 3) - 1 + 3 * (10 ** (k - 3) - 1))
    entry = len('{"c":,"d":"","i":}') + DIGEST_LENGTH
    assert size.manifest_bytes == 2 + n * entry + digits_below_power_of_ten(k) + starts + n - 1
    assert plan.lambda_invocations == n + 2
    stages = {s.id: s for s in plan.stages}
    assert stages["map-square"].children == n and stages["map-square"].transitions == 1 + 2 * n
    assert stages["total"].lists == n // 1000 and stages["total"].gets == n + 2  # and the pointer, the manifest
    reader = next(limit for limit in plan.limits if limit.check == "ItemReader items")
    assert (reader.value, reader.ok) == (n, n <= prices.MAX_READER_ITEMS)


def test_birds_by_hand(config: Config) -> None:
    """birds with 3 items: the table's numbers, and the USD from the list prices."""
    from lokki_sam.loader import load_flow

    plan = plan_of(load_flow(str(REPO / "examples" / "birds.py")), {}, config)
    rows = {s.id: (s.invocations, s.transitions, s.puts, s.gets, s.lists, s.history_events) for s in plan.stages}
    assert rows == {
        "Start flow": (0, 1, 0, 0, 0, 4),
        "get_birds": (1, 1, 3, 0, 0, 5),  # one items chunk, the manifest, the step's pointer
        "map-flap": (3, 1 + 3 + 3, 3, 3, 0, 6),  # Map state, 3 child starts, 3 child Tasks
        "join": (1, 1, 2, 5, 1, 5),  # LIST; the source's pointer, the manifest, 3 outputs; its result + pointer
    }
    usd = (
        10 * prices.STANDARD_TRANSITION_USD
        + 5 * prices.LAMBDA_REQUEST_USD
        + (8 + 1 + 2) * prices.S3_PUT_USD  # handler PUTs (with 2 pointers) + LIST + the ResultWriter's (estimated)
        + (8 + 1) * prices.S3_GET_USD  # handler GETs (with 1 pointer) + the ItemReader's
    )
    assert plan.usd == pytest.approx(usd)
    assert plan.durations_known is False


def test_measure_prices_memory_architecture_and_express_duration(config: Config) -> None:
    plan = plan_of(napping, {"n": 4, "seconds": 0.03}, config, measure=True)
    assert plan.durations_known
    stage = next(s for s in plan.stages if s.id == "map-nap")
    assert (stage.children, stage.invocations, stage.express_requests) == (2, 4, 2)
    # nap (512 MB) and heavy_nap (1024 MB) each sleep 0.03 s per item, 2 items per child.
    assert stage.gb_seconds is not None and stage.gb_seconds >= 2 * (2 * 0.03 * 0.5 + 2 * 0.03 * 1.0)
    assert stage.longest_child_seconds is not None and 0.12 <= stage.longest_child_seconds < 2
    # Express duration: whole 100 ms, 64 MB.
    assert stage.express_gb_seconds is not None and stage.express_gb_seconds >= 2 * 0.2 * 64 / 1024
    assert stage.lambda_duration_usd is not None
    assert stage.lambda_duration_usd > stage.gb_seconds * prices.LAMBDA_GB_SECOND_USD["arm64"]  # part x86_64


def test_measure_with_items_scales_the_mean_duration(config: Config) -> None:
    plan = plan_of(napping, {"n": 2, "seconds": 0.01}, config, "map-nap=40", measure=True)
    stage = next(s for s in plan.stages if s.id == "map-nap")
    assert (stage.items, stage.children) == (40, 20)
    assert stage.gb_seconds is not None and stage.gb_seconds >= 20 * 2 * 0.01 * 1.5


@pytest.mark.parametrize("measure", [False, True])
def test_a_flaky_step_is_sized_and_measured_under_its_retry(config: Config, measure: bool) -> None:
    ATTEMPTS.clear()
    plan = plan_of(flaky, {"n": 3}, config, measure=measure)
    assert plan.sizes["map-flaky_item"].items == 3
    assert ATTEMPTS["source"] == 2
    notes = [n for n in plan.notes if n.startswith("the local run retried")]
    if measure:
        assert all(ATTEMPTS[f"item-{x}"] == 2 for x in range(3))
        assert plan.durations_known
        assert notes == [
            "the local run retried (flaky_source 1x, flaky_item 3x) as the steps' Retry allows: "
            "durations are the successful attempts'"
        ]
    else:  # sizing runs the stages up to the map's source only
        assert not any(key.startswith("item-") for key in ATTEMPTS)
        assert notes == [
            "the local run retried (flaky_source 1x) as the steps' Retry allows: durations are the successful attempts'"
        ]


@pytest.mark.parametrize(
    ("extra", "error"), [(-1, "ConnectionError: item -1: the call drops"), (99, "ValueError: not retried")]
)
def test_a_step_failing_beyond_its_retry_fails_the_measure(config: Config, extra: int, error: str) -> None:
    ATTEMPTS.clear()
    with pytest.raises(PlanError, match=f"step 'flaky_item' failed when run locally for --measure: {error}"):
        plan_of(flaky, {"n": 1, "extra": extra}, config, measure=True)
    assert ATTEMPTS[f"item-{extra}"] == (2 if extra < 0 else 1)  # one retry for ConnectionError only


def test_items_for_one_map_the_other_from_the_local_run(config: Config) -> None:
    f = SHAPES["maps_in_sequence"][0]  # numbers(3) -> squares -> total 14 -> range(14) -> doubles
    plan = plan_of(f, {"n": 3}, config, "map-square=1000")
    assert plan.sizes["map-square"].items == 1000 and plan.sizes["map-square"].estimated
    assert plan.sizes["map-double"].items == 14 and not plan.sizes["map-double"].estimated


def test_a_failing_source_is_not_run_when_items_size_its_map(config: Config) -> None:
    plan = plan_of(broken, {}, config, "7")
    assert plan.sizes["map-twice"].items == 7


def test_the_local_run_leaves_no_files(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    plan_of(napping, {"seconds": 0}, config, measure=True)
    with pytest.raises(PlanError):
        plan_of(broken, {}, config)
    assert list(scratch.iterdir()) == []


# ------------------------------------------------------------------------------------ limits


def limit(plan: Plan, check: str) -> Any:
    return next(x for x in plan.limits if x.check.startswith(check))


def test_inline_map_state_and_history_over_their_limits(config: Config) -> None:
    plan = plan_of(inline_chain, {}, config, "20000")
    state = limit(plan, "INLINE map state")
    assert state.ok is False and state.value > prices.MAX_PAYLOAD_BYTES
    history = limit(plan, "parent execution history")
    assert history.ok is False and history.value == plan.history_events > 25_000
    assert {x.check for x in plan.exceeded} == {state.check, history.check}
    small = plan_of(inline_chain, {}, config, "100")
    assert limit(small, "INLINE map state").ok and limit(small, "parent execution history").ok


def test_inline_state_size_is_the_state_the_source_returns(config: Config) -> None:
    """The state Step Functions holds after the source: params + {Bucket, Key, count, Items}."""
    graph = inline_open.graph
    plan = plan_of(inline_open, {"n": 3}, config)
    run_id = layout.new_run_id(graph.name)  # the same length as any run id of the flow
    identity = "0" * DIGEST_LENGTH
    key = names.flow_prefix(STACK, graph.name) + "/" + layout.manifest(run_id, "letters", identity)
    manifest = [{"c": 0, "d": identity, "i": i} for i in range(3)]
    items = {"Bucket": "b" * 63, "Key": key, "count": 3, "id": identity, "Items": manifest}
    state = {"params": {"n": 3}, "items": items}
    assert limit(plan, "INLINE map state").value == len(json.dumps(state, separators=(",", ":")))


@step
def labelled(xs: list[str], tag: str = "t") -> str:
    return tag + ",".join(xs)


@flow
def fat_batches(n: int = 3, tag: str = "t"):
    return letters(n=n).map(twice, batch_size=1000).agg(labelled)


def test_a_batch_carrying_large_parameters_is_over_the_payload_limit(config: Config) -> None:
    plan = plan_of(fat_batches, {"n": 3, "tag": "x" * 400}, config, "5000")
    child = limit(plan, "map child input")
    assert child.ok is False and child.value > 1000 * 400
    assert "batch_size" in child.fix
    assert limit(plan_of(fat_batches, {"n": 3}, config), "map child input").ok


@step(timeout=200)
def slow(s: str) -> str:
    return s


@step(timeout=100)
def quick(s: str) -> str:
    return s


@flow
def express_slow(n: int = 3):
    return letters(n=n).map(slow, execution_type="EXPRESS").next(slow).agg(glue)


@flow
def express_quick(n: int = 3):
    return letters(n=n).map(quick, execution_type="EXPRESS").next(quick).agg(glue)


def test_express_five_minutes_bounded_by_timeouts_or_measured(config: Config) -> None:
    unknown = limit(plan_of(express_slow, {}, config), "EXPRESS child duration")
    assert (unknown.ok, unknown.value) == (None, None) and "--measure" in unknown.fix
    bounded = limit(plan_of(express_quick, {}, config), "EXPRESS child duration")
    assert (bounded.ok, bounded.value) == (True, 200)
    measured = limit(plan_of(express_slow, {}, config, measure=True), "EXPRESS child duration")
    assert measured.ok is True and measured.value < 5


@step(environment={"BIG": "v" * 4100})
def loud(n: int = 1) -> int:
    return n


@flow
def big_env(n: int = 1):
    return loud(n=n)


def test_environment_over_4_kb_and_names_too_long_for_the_stack(config: Config) -> None:
    plan = plan_of(big_env, {}, config, stack_name="s" * 75)
    env = limit(plan, "Lambda environment variables")
    assert env.ok is False and env.where == "BigEnvLoudFunction" and env.value > 4096
    machine = limit(plan, "state machine name")
    assert machine.ok is False and machine.value == 75 + 1 + len("big_env")
    function = limit(plan, "function name")
    assert function.ok is True and "shortens" in function.note


def test_config_defaults_reach_the_lambda_checks(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text("memory = 2048\ntimeout = 900\n")
    plan = plan_of(big_env, {}, load_config(tmp_path, environ={}))
    assert (limit(plan, "Lambda memory").value, limit(plan, "Lambda timeout").value) == (2048, 900)
    assert limit(plan, "Lambda timeout").ok


def test_stack_name_from_samconfig_else_assumed(
    config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assumed = make_plan(big_env.graph, {}, config=config)
    assert assumed.target.stack_source == "assumed" and any("--stack-name" in n for n in assumed.notes)
    (tmp_path / "samconfig.toml").write_text('version = 0.1\n[default.deploy.parameters]\nstack_name = "prod-x"\n')
    found = make_plan(big_env.graph, {}, config=config)
    assert (found.target.stack, found.target.stack_source) == ("prod-x", "samconfig.toml [default]")


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["map-nope=3"], "has no map 'map-nope'"),
        (["x"], "not a whole number"),
        (["map-square="], "not a whole number"),
        (["map-square=2.5"], "not a whole number"),
        (["-4"], "cannot have -4 items"),
        (["3", "4"], "given twice"),
        (["map-square=3", "map-square=4"], "given twice"),
        ([str(10**15 + 1)], r"more items than any run could have \(plan takes up to 1,000,000,000,000,000;"),
        (["1" + "0" * 400], "more items than any run could have"),
    ],
)
def test_bad_items_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(PlanError, match=message) as caught:
        parse_items(items, SHAPES["map_agg"][0].graph)
    assert caught.value.exit_code == 2
    if "map-nope" in items[0]:
        assert caught.value.hint == "its maps: map-square"


def test_items_for_a_flow_without_maps_is_refused() -> None:
    with pytest.raises(PlanError, match=r"no \.map"):
        parse_items(["3"], SHAPES["linear"][0].graph)


def test_items_for_every_map_and_one_map() -> None:
    graph = SHAPES["maps_in_sequence"][0].graph
    assert parse_items(["5", "map-double=2"], graph) == {"map-square": 5, "map-double": 2}


def test_failing_source_names_the_step_the_error_and_items(config: Config) -> None:
    with pytest.raises(PlanError) as caught:
        plan_of(broken, {}, config)
    text = caught.value.render()
    assert "step 'failing_source' failed when run locally to size map-twice" in text
    assert "ValueError: the source is broken" in text
    assert "--items" in text and caught.value.exit_code == 2


# ------------------------------------------------------------------------------- the command

FAILING = """
from lokki_sam import flow, step

@step
def source(n: int = 3) -> list[int]:
    raise RuntimeError("cannot reach the catalogue")

@step
def one(x: int) -> int:
    return x

@flow
def catalogue(n: int = 3):
    return source(n=n).map(one)
"""


def test_cli_json_has_the_integer_fields_and_the_float_usd(lokki: Callable[..., Any]) -> None:
    result = lokki("plan", str(REPO / "examples" / "birds.py"), "-p", "limit=5", "--json", "--stack-name", "demo")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    for key in ("lambda_invocations", "state_transitions", "s3_requests"):
        assert type(doc[key]) is int
    assert type(doc["usd"]) is float and doc["usd"] > 0
    assert (doc["lambda_invocations"], doc["state_transitions"], doc["s3_requests"]) == (7, 14, 23)
    assert [s["id"] for s in doc["stages"]] == ["Start flow", "get_birds", "map-flap", "join"]
    assert all(x["ok"] is not False for x in doc["limits"]) and doc["durations"] == "unknown"


def test_cli_table_then_limits(lokki: Callable[..., Any]) -> None:
    result = lokki("plan", str(REPO / "examples" / "birds.py"), "--measure", "--stack-name", "demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("total") < out.index("limits") < out.index("notes")
    assert "✓ parent execution history: 20 events" in out
    assert "durations unknown" not in out


WIDE = """
from lokki_sam import flow, step

@step
def src() -> list[int]:
    return [1]

@step
def one(x: int) -> int:
    return x

@flow
def wide():
    return src().map(one, mode="inline")
"""


def test_cli_over_a_limit_exits_1(lokki: Callable[..., Any], write_module: Callable[[str, str], Path]) -> None:
    path = write_module("wide", WIDE)
    result = lokki("plan", str(path), "--items", "30000", "--stack-name", "demo")
    assert result.returncode == 1
    assert "✗ parent execution history" in result.stdout
    assert "error: over a service limit" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["--items", "map-nope=3"], "its maps: map-flap"),
        (["--items", "lots"], "not a whole number"),
        (["-p", "limit=abc"], "limit"),
        (["-p", "nope=1"], "nope"),
        (["-p", "limit"], "name=value"),
    ],
)
def test_cli_bad_input_exits_2_without_a_traceback(lokki: Callable[..., Any], args: list[str], wanted: str) -> None:
    result = lokki("plan", str(REPO / "examples" / "birds.py"), *args)
    assert result.returncode == 2, result.stdout
    assert wanted in result.stderr and "Traceback" not in result.stderr


def test_cli_failing_source_exits_2_naming_it(
    lokki: Callable[..., Any], write_module: Callable[[str, str], Path]
) -> None:
    path = write_module("catalogue_flow", FAILING)
    result = lokki("plan", str(path))
    assert result.returncode == 2
    assert "step 'source' failed when run locally" in result.stderr
    assert "RuntimeError: cannot reach the catalogue" in result.stderr
    assert "--items" in result.stderr and "Traceback" not in result.stderr
    sized = lokki("plan", str(path), "--items", "map-one=12", "--json")
    assert sized.returncode == 0, sized.stderr
    assert json.loads(sized.stdout)["lambda_invocations"] == 1 + 12


def test_a_steps_prints_stay_off_the_json(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_of(chatty, {}, config, measure=True)
    json.dumps(render.as_json(plan))
    captured = capsys.readouterr()
    assert captured.out == "" and "hello from a step" in captured.err


@step
def talk(n: int = 1) -> int:
    print("hello from a step")
    return n


@flow
def chatty(n: int = 1):
    return talk(n=n)
