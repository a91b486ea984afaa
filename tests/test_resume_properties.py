"""Resume, tried the way a red team would: random flows of maps and aggregations, random tolerated
failures, random edits of code, data and options between the failing run and the resume.

The resume's result always equals a fresh run of the edited flow, and exactly the steps (and map
items) whose code or input changed, or that had no output, are computed again: the calls every
step logs are compared with the model in tests/support/resume_model.py. Locally in-process, and
through moto's Step Functions interpreter with the real Lambda handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from lokki_sam import execution, names, runtime
from lokki_sam.errors import StepFailed
from lokki_sam.execution import RunContext
from lokki_sam.ir import FlowGraph
from lokki_sam.loader import load_flow
from lokki_sam.local import run_flow
from tests.support.resume_model import Failures, Version, present_after, read_calls, scenarios, simulate
from tests.support.sam import forget_module, restored_sys_path

MODULE = "propflow"
RUN = "prop-run"


def property_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,  # CI runs the same examples every time; the database is not kept
        database=None,
    )


def load(folder: Path, version: Version) -> FlowGraph:
    """Write `version` as the flow module and import it afresh (as a new process would)."""
    path = folder / f"{MODULE}.py"
    path.write_text(version.text())
    forget_module(MODULE)
    runtime.reset_cache()
    return load_flow(str(path)).graph


@pytest.fixture
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with restored_sys_path():
        yield tmp_path_factory.mktemp("prop")
    forget_module(MODULE)


@property_settings(60)
@given(scenario=scenarios())
def test_a_local_resume_recomputes_exactly_what_changed_and_equals_a_fresh_run(
    folder: Path, scenario: tuple[int, Version, Failures, Version, Failures]
) -> None:
    local_resume(folder, scenario, "threads")


@property_settings(20)
@given(scenario=scenarios())
def test_a_local_resume_in_worker_processes_recomputes_exactly_what_changed(
    folder: Path, scenario: tuple[int, Version, Failures, Version, Failures]
) -> None:
    """The same property with the maps in worker processes (fewer examples: the executor is
    what differs, the examples' shapes are the same)."""
    local_resume(folder, scenario, "processes")


def local_resume(folder: Path, scenario: tuple[int, Version, Failures, Version, Failures], executor: str) -> None:
    n, v1, f1, v2, f2 = scenario
    work = folder / f"case{len(list(folder.iterdir()))}"
    work.mkdir()
    f1.write(work, (present_after(v1, n, f1),) * 2)
    with pytest.raises(StepFailed):
        run_flow(load(work, v1), {"n": n}, store=work / "runs", run_id=RUN, executor=executor)
    before = simulate(v1, n, f1)
    read_calls(work)

    graph = load(work, v2)
    f2.write(work, (0, 0))
    resumed = run_flow(graph, store=work / "runs", resume=RUN, executor=executor)
    expected = simulate(v2, n, f2, before=before)
    assert read_calls(work) == expected.calls, (v1, v2, f1, f2)
    fresh = run_flow(graph, {"n": n}, store=work / "fresh", executor=executor)
    assert resumed.result == fresh.result == expected.result


@pytest.mark.emulator
@property_settings(12)
@given(scenario=scenarios())
def test_a_cloud_resume_recomputes_exactly_what_changed_and_equals_a_fresh_run(
    folder: Path, scenario: tuple[int, Version, Failures, Version, Failures]
) -> None:
    """The same property through Step Functions (moto's interpreter) and the Lambda handler: a
    failed execution, a redeploy of the edited flow, `<run>.resume-1` as `lokki-sam invoke
    --resume` starts it."""
    from tests.support.moto_sfn import moto_cloud

    n, v1, f1, v2, f2 = scenario
    work = folder / f"case{len(list(folder.iterdir()))}"
    work.mkdir()
    f1.write(work, (present_after(v1, n, f1),) * 2)
    with moto_cloud() as cloud:
        first = cloud.execute(load(work, v1), {"n": n}, name=RUN)
        assert first.status == "FAILED", first
        before = simulate(v1, n, f1)
        read_calls(work)

        graph = load(work, v2)
        cloud.deploy(graph)
        f2.write(work, (0, 0))
        resumed = cloud.execute(graph, {"n": n}, name=names.resume_execution_name(RUN, 1))
        assert resumed.status == "SUCCEEDED", resumed
        expected = simulate(v2, n, f2, before=before)
        assert read_calls(work) == expected.calls, (v1, v2, f1, f2)
        cloud.execute(graph, {"n": n}, name="prop-fresh")
        resumed_result = result(cloud, graph, RUN, n, names.resume_execution_name(RUN, 1))
        assert resumed_result == result(cloud, graph, "prop-fresh", n) == expected.result


def result(cloud: Any, graph: FlowGraph, run_id: str, n: int, execution_name: str = "") -> Any:
    ctx = RunContext(graph, cloud.store(graph), run_id, {"n": n}, execution=execution_name)
    return execution.read_result(ctx)
