"""`lokki-sam plan` with Batch steps: jobs instead of Lambda invocations, Fargate vCPU- and
GB-seconds at list price (a one-minute minimum per job), and the Batch limits a run meets."""

from __future__ import annotations

from pathlib import Path

import pytest

from lokki_sam.config import load_config
from lokki_sam.plan import batch as plan_batch
from lokki_sam.plan import make_plan, render
from tests.flows import batch_mixed


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lokki.toml").write_text('architecture = "x86_64"\n[batch]\nmax_vcpus = 16\n')
    return load_config(tmp_path, environ={})


def test_batch_steps_are_jobs_not_invocations(config: object) -> None:
    plan = make_plan(batch_mixed.batch_mixed.graph, {"n": 10}, ["1000"], config=config)  # type: ignore[arg-type]
    stages = {s.id: s for s in plan.stages}
    assert stages["numbers"].invocations == stages["total"].invocations == 0
    assert stages["map-square"].invocations == 500  # square on Lambda: one per child of two items
    # The Batch map source's result is read back by one more Task.
    assert stages["numbers"].transitions == 2 and stages["total"].transitions == 1
    jobs = {j.node: j for j in plan.batch}
    assert (jobs["numbers"].jobs, jobs["shift"].jobs, jobs["total"].jobs) == (1, 500, 1)
    assert (jobs["shift"].size.cpu, jobs["shift"].size.memory, jobs["numbers"].size.cpu) == (1, 2048, 0.5)
    assert all(j.job_seconds is None and j.usd is None for j in plan.batch)  # durations unknown: not priced
    limits = {(limit.check, limit.where): limit for limit in plan.limits}
    rate = limits[("Batch SubmitJob rate", "shift")]
    assert (rate.value, rate.limit, rate.ok) == (500, plan_batch.SUBMIT_JOB_TPS, None)
    vcpus = limits[("Batch vCPUs at once", "shift")]
    assert (vcpus.value, vcpus.limit) == (500, 16)
    assert limits[("Batch SubmitJob payload", "shift")].ok is True
    assert "500 AWS Batch job(s) of 1 vCPU, 2048 MiB on fargate" in render.text(plan)
    assert render.as_json(plan)["batch_jobs"][1]["jobs"] == 500


def test_measured_jobs_bill_fargate_with_a_minute_minimum(config: object) -> None:
    plan = make_plan(batch_mixed.batch_mixed.graph, {"n": 6}, config=config, measure=True)  # type: ignore[arg-type]
    shift = next(j for j in plan.batch if j.node == "shift")
    assert shift.jobs == 3 and shift.job_seconds == 3 * plan_batch.FARGATE_MIN_SECONDS  # each ran under a second
    expected = (
        shift.job_seconds
        / 3600
        * (plan_batch.FARGATE_VCPU_HOUR_USD["x86_64"] * 1 + plan_batch.FARGATE_GB_HOUR_USD["x86_64"] * 2)
    )
    assert shift.usd == pytest.approx(expected)
    assert plan.usd == pytest.approx(sum(s.usd for s in plan.stages) + sum(j.usd or 0 for j in plan.batch))
    assert plan.durations_known
