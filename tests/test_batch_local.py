"""Batch steps in a local run: each in a subprocess through the job's entry point, on the run's
store, with the same result, keys, map failure tolerance and resume as Lambda steps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import layout
from lokki_sam.batch import local as batch_local
from lokki_sam.config import SCHEMA
from lokki_sam.errors import FlowDefinitionError, StepFailed
from lokki_sam.local import MapFailed, run_flow
from lokki_sam.progress import Reporter
from tests.flows import batch_mixed

# Every Batch step runs in a fresh interpreter (the job's entry point).
pytestmark = pytest.mark.cli
DEFAULTS = {name: key.default for name, key in SCHEMA.items()}


class Notes(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def config_warning(self, message: str) -> None:
        self.lines.append(message)


def expected(n: int, offset: int, label: str) -> str:
    return f"{label}={sum(x * x + offset for x in range(n))}"


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_flow_with_batch_steps_runs_locally_in_subprocesses(tmp_path: Path, executor: str) -> None:
    """A map body's Batch step runs its job's subprocess from a thread or from a worker process alike."""
    notes = Notes()
    outcome = run_flow(
        batch_mixed.batch_mixed, {"n": 6, "offset": 2}, store=tmp_path, run_id="r1", reporter=notes, executor=executor
    )
    assert outcome.result == expected(6, 2, "sum")
    # The Lambda layout: the map's outputs per batch of two (each job's), tagged with their identities.
    shift = tmp_path / layout.node_dir("r1", "shift")
    assert sorted(p.name.rsplit("-", 1)[0] for p in shift.glob("*.pkl")) == [
        "00000000-00000001",
        "00000002-00000003",
        "00000004-00000005",
    ]
    # Each Batch step's declared size is reported once, before the run.
    assert notes.lines == [
        "step 'numbers' runs as an AWS Batch job: here in a subprocess, its declared 0.5 vCPU, 1024 MiB "
        "(fargate), timeout 3600 s reported, not enforced",
        "step 'shift' runs as an AWS Batch job: here in a subprocess, its declared 1 vCPU, 2048 MiB "
        "(fargate), timeout 3600 s reported, not enforced",
        "step 'total' runs as an AWS Batch job: here in a subprocess, its declared 1 vCPU, 2048 MiB "
        "(fargate), timeout 3600 s reported, not enforced",
    ]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_failing_batch_item_fails_the_map_and_a_resume_recomputes_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    calls = tmp_path / "calls"
    monkeypatch.setenv("LOKKI_TEST_CALLS", str(calls))
    monkeypatch.setenv("LOKKI_TEST_FAIL_ON", "9")
    store = tmp_path / "runs"
    with pytest.raises(MapFailed) as failed:
        run_flow(batch_mixed.batch_single, {"n": 5}, store=store, run_id="r2", executor=executor)
    text = str(failed.value)
    assert "map 'map-square' failed: 1 of 5 item(s) failed" in text
    assert re.search(r"item 3: BatchStepFailed: Traceback .*ValueError: 9 is not allowed", text, re.S), text
    assert "(step 'shift')" in text
    assert sorted(calls.read_text().split()) == ["0", "1", "16", "4", "9"]
    calls.unlink()
    monkeypatch.delenv("LOKKI_TEST_FAIL_ON")
    outcome = run_flow(batch_mixed.batch_single, resume="r2", store=store, executor=executor)
    assert outcome.result == expected(5, 1, "sum")
    assert calls.read_text().split() == ["9"]  # only the failed item ran again


def test_a_failing_batch_step_outside_maps_names_it_with_the_users_traceback(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as failed:
        run_flow(batch_mixed.batch_mixed, {"n": 2, "label": "boom"}, store=tmp_path, run_id="r3")
    text = str(failed.value)
    assert text.startswith("flow 'batch_mixed', run r3: step 'total' failed: BatchStepFailed: Traceback"), text
    assert "batch_mixed.py" in text and "RuntimeError: no boom allowed" in text
    assert "hint: fix it, then resume with: --resume r3" in text


def test_a_size_the_batch_defaults_cannot_complete_is_refused_before_the_run() -> None:
    graph = batch_mixed.batch_mixed.graph
    with pytest.raises(FlowDefinitionError, match=r"step 'shift': Fargate offers 1 vCPU with 2048-8192"):
        batch_local.describe_sizes(graph, {**DEFAULTS, "batch_memory": 512})


def test_lokki_sam_run_reports_the_batch_sizes_and_prints_the_flows_result(lokki: Any, tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text("[batch]\ncpu = 2\nmemory = 4096\n")
    flow_file = Path(batch_mixed.__file__)
    done = lokki("run", f"{flow_file}:batch_single", "-p", "n=3", "-p", "label=total")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected(3, 1, "total")
    assert "step 'shift' runs as an AWS Batch job: here in a subprocess, its declared 2 vCPU, 4096 MiB" in done.stderr


def test_switching_steps_between_batch_and_lambda_keeps_the_keys(lokki: Any, tmp_path: Path) -> None:
    """A run made with Batch steps is resumed with the same steps on Lambda (configuration only):
    every output is found under the same keys, nothing is computed again, the result is the same."""
    flow_ref = f"{Path(batch_mixed.__file__)}:batch_mixed"
    calls = tmp_path / "calls"
    first = lokki("run", flow_ref, "-p", "n=4", "--store", "runs", LOKKI_TEST_CALLS=str(calls))
    assert first.returncode == 0, first.stderr
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 1 and len(calls.read_text().split()) == 4, first.stderr
    calls.unlink()
    again = lokki(
        "run", flow_ref, "--resume", runs[0], "--store", "runs", LOKKI_TEST_CALLS=str(calls), LOKKI_TEST_LAMBDA_ONLY="1"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and first.stdout.strip() == expected(4, 1, "sum")
    assert not calls.exists()  # every step's output reused: same fingerprints, same keys
    assert "runs as an AWS Batch job" in first.stderr and "runs as an AWS Batch job" not in again.stderr
