"""lokki_sam.testing: the helper the scaffolded projects' tests (and users' tests) call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import Retry, flow, step
from lokki_sam.errors import ParamError, StepFailed
from lokki_sam.testing import FlowRun, run_flow_in_process
from tests.flows.shapes import SHAPES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_gives_its_expected_result(name: str) -> None:
    target, params, expected = SHAPES[name]
    run = run_flow_in_process(target, params)
    assert run.result == expected
    assert run.flow == name
    # Every node and every map has an output, in execution order, and the last one is the result.
    ids = [s.id for s in target.graph.stages for s in (*getattr(s, "nodes", ()), s)]
    assert list(run.outputs) == ids
    assert run.output(target.graph.result_stage.id) == expected


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_map_body_steps_have_one_output_per_item_in_item_order(executor: str) -> None:
    target, _, _ = SHAPES["inner_chain"]  # numbers(n).map(inc).next(double).agg(total)
    run = run_flow_in_process(target, n=4, executor=executor)
    assert run.output("numbers") == [1, 2, 3, 4]
    assert run.output("inc") == [2, 3, 4, 5]
    assert run.output("double") == [4, 6, 8, 10]
    assert run.outputs_by_item("double") == {0: 4, 1: 6, 2: 8, 3: 10}
    assert run.output("map-inc") == [4, 6, 8, 10]
    assert run.output("total") == 28 == run.result


def test_a_reused_step_has_one_output_per_use() -> None:
    target, _, _ = SHAPES["reused_step"]  # start(value).next(inc).next(inc).next(inc)
    run = run_flow_in_process(target, value=10)
    assert [run.output(k) for k in ("start", "inc", "inc-2", "inc-3")] == [10, 11, 12, 13]


def test_params_as_keywords_and_mapping_are_coerced_like_the_cli() -> None:
    target, _, _ = SHAPES["params_by_name"]
    run = run_flow_in_process(target, {"n": "2", "upper": "yes"}, factor="3")
    assert run.params == {"n": 2, "factor": 3, "prefix": "x", "upper": True}
    assert run.result == "X3,X6"


def test_bad_params_raise_a_clear_error() -> None:
    target, _, _ = SHAPES["map_agg"]
    with pytest.raises(ParamError, match="'n' expects int"):
        run_flow_in_process(target, n="many")
    with pytest.raises(ParamError, match="nope"):
        run_flow_in_process(target, nope=1)


def test_a_flow_ref_string_is_loaded_like_the_cli_does() -> None:
    run = run_flow_in_process(str(ROOT / "examples" / "birds.py"), limit=2)
    assert run.result == "flappy goose, flappy duck"
    assert run.output("get_birds") == ["goose", "duck"]


def test_unknown_step_names_the_known_ones() -> None:
    run = run_flow_in_process(SHAPES["linear"][0])
    with pytest.raises(KeyError, match=r"no step or map 'nope' \(known: start, inc, double, inc-2\)"):
        run.output("nope")
    with pytest.raises(KeyError, match=r"'start' is not a step inside a map .* \(those steps: none\)"):
        run.outputs_by_item("start")


def test_artifacts_go_to_a_temporary_store_unless_one_is_given(tmp_path: Path) -> None:
    target, params, expected = SHAPES["map_agg"]
    run = run_flow_in_process(target, params, store=tmp_path / "runs")
    assert (tmp_path / "runs" / run.run_id / "run.json").is_file()
    assert run_flow_in_process(target, params, store=str(tmp_path / "runs")).result == expected
    assert len(list((tmp_path / "runs").iterdir())) == 2


# ------------------------------------------------------------------ failures and retries

CALLS: list[int] = []


@step
def items() -> list[int]:
    return list(range(10))


@step
def fragile(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


@step
def count(xs: list[int]) -> int:
    return len(xs)


@step(retry=Retry(retries=2, interval=5, exceptions=(ConnectionError,)))
def flaky(x: int = 0) -> int:
    CALLS.append(x)
    if len(CALLS) < 3:
        raise ConnectionError("try again")
    return x + 1


@flow
def tolerant():
    return items().map(fragile, tolerated_failure_count=1).agg(count)


@flow
def strict():
    return items().map(fragile).agg(count)


@flow
def retried(x: int = 1):
    return flaky(x=x)


def test_tolerated_failures_are_reported_and_skipped() -> None:
    run = run_flow_in_process(tolerant)
    assert run.result == 9
    assert 3 not in run.output("fragile")
    assert run.outputs_by_item("fragile") == {i: i for i in range(10) if i != 3}
    [failure] = run.failures
    assert (failure.step, failure.indexes, failure.error_type) == ("fragile", (3,), "ValueError")


def test_a_failing_step_raises_step_failed_naming_it() -> None:
    with pytest.raises(StepFailed, match=r"(?s)map 'map-fragile' failed: 1 of 10.*item 3: ValueError: bad item 3"):
        run_flow_in_process(strict)


def test_retries_can_skip_their_waits() -> None:
    CALLS.clear()
    waits: list[float] = []
    run = run_flow_in_process(retried, x=4, sleep=waits.append)
    assert run.result == 5
    assert waits == [5, 10]


def _probe(code: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return {"stdout": out.stdout}


def test_importable_without_pytest_or_cli_dependencies() -> None:
    code = (
        "import sys\n"
        "for name in ('pytest', 'click', 'rich', 'yaml'): sys.modules[name] = None  # block the import\n"
        "from lokki_sam.testing import run_flow_in_process\n"
        "print(run_flow_in_process('examples/birds.py', limit=1).result)\n"
    )
    assert _probe(code)["stdout"].strip() == "flappy goose"


def test_flow_run_is_a_plain_value() -> None:
    run = run_flow_in_process(SHAPES["linear"][0], value=1)
    assert isinstance(run, FlowRun)
    assert run.seconds >= 0 and run.run_id.startswith("linear-")
