"""The SAM journey of flows mixing Lambda and AWS Batch steps, on lokki-sam's local cloud (LocalStack
with lokki-sam's plugins), no Docker, no AWS account: exactly `lokki-sam generate`, `sam build`,
`sam deploy --config-env local` and `lokki-sam invoke`, as a user runs them in the project folder
(`lokki-sam emulator start` ran there: the local cloud takes the Batch images from it).

The flows: `mixed` (a Batch map source outside the map, a Lambda step then a Batch step with a
parameter in the map's body, a Lambda aggregation), and tests/flows/batch_mixed.py's `batch_single`
(a Batch aggregation with a parameter) and `batch_only` (every step a Batch job). `invoke` prints
what `run` prints; a failing Batch item fails the run naming the step, the item and the job's exit
code; `--resume` recomputes that item only; `runs`, `result` and `logs` (the job's log stream) work
as for Lambda steps.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.emulator import started_in
from tests.support.sam import REPO
from tests.test_journey import BIN, App, run_tool

pytestmark = [pytest.mark.journey, pytest.mark.emulator]

STACK = "lokki-batch-journey"
# Shift fails on item 3 (9 = 3 squared) while a flag file exists; every call leaves a file in calls/
# (jobs and Lambdas are host processes on this machine), so a test counts what ran where.
MIXED = """
import uuid
from pathlib import Path

from lokki_sam import flow, step

STATE = Path("{state}")


def called(what: str) -> None:
    (STATE / "calls").mkdir(parents=True, exist_ok=True)
    (STATE / "calls" / f"{{what}}.{{uuid.uuid4().hex}}").touch()


@step(compute="batch", cpu=0.5, memory=1024)
def numbers(n: int = 6) -> list[int]:
    called("numbers")
    return list(range(n))


@step
def square(x: int) -> int:
    called(f"square-{{x}}")
    return x * x


@step(compute="batch")
def shift(x: int, offset: int = 1) -> int:
    called(f"shift-{{x}}")
    if x == 9 and (STATE / "flag").exists():
        raise ValueError(f"{{x}} is not ready")
    return x + offset


@step
def total(xs: list[int], label: str = "sum") -> str:
    called("total")
    return f"{{label}}={{sum(xs)}}"


@flow
def mixed(n: int = 6, offset: int = 1, label: str = "sum"):
    return numbers(n=n).map(square).next(shift, offset=offset).agg(total, label=label)
"""
# (FLOW_REF, params) whose invoke must print what run prints.
CASES = [
    ("src/mixed.py", ("offset=2", "label=total")),
    ("src/batch_mixed.py:batch_single", ("n=4", "label=all")),
    ("src/batch_mixed.py:batch_only", ("n=3",)),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    root = tmp_path_factory.mktemp("batch-journey")
    src = root / "src"
    src.mkdir()
    (src / "mixed.py").write_text(MIXED.format(state=root / "state"))
    shutil.copy(REPO / "tests" / "flows" / "batch_mixed.py", src / "batch_mixed.py")
    (src / "requirements.txt").write_text("# the functions' own dependencies: none (lokki-sam comes in a layer)\n")
    # The project's settings: where the Batch jobs would run on AWS (the local cloud checks no VPC),
    # and this machine's architecture for the images it runs.
    (root / "lokki.toml").write_text(
        'architecture = "x86_64"\n\n[batch]\nsubnets = ["subnet-0123456789abcdef0"]\n'
        'security_groups = ["sg-0123456789abcdef0"]\n'
    )
    (root / "samconfig.toml").write_text(
        f'version = 0.1\n\n[local.deploy.parameters]\nstack_name = "{STACK}"\nregion = "us-east-1"\n'
        'resolve_s3 = true\ncapabilities = "CAPABILITY_IAM CAPABILITY_NAMED_IAM"\nconfirm_changeset = false\n'
        "fail_on_empty_changeset = false\n"
    )
    home = root / "home"
    home.mkdir()
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "SAM_CLI_TELEMETRY": "0",
        "SAM_CLI_POLL_DELAY": "0.5",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LOKKI_SAM_STATE": str(root / "emulator-state"),  # this module's emulator only
    }
    refs = ["src/mixed.py", "src/batch_mixed.py:batch_single", "src/batch_mixed.py:batch_only"]
    run_tool([str(BIN / "lokki-sam"), "generate", *refs], root, env)
    run_tool([str(BIN / "sam"), "build"], root, env | {"PIP_NO_INDEX": "1"}, timeout=600)
    with started_in(root, env) as deployed:
        out = run_tool([str(BIN / "sam"), "deploy", "--config-env", "local"], root, deployed, timeout=900)
        assert f"Successfully created/updated stack - {STACK}" in out
        yield App(root, deployed, "localstack")


def lokki(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    return (
        app.lokki(*args, "--config-env", "local")
        if args[0] in ("invoke", "runs", "result", "logs")
        else app.lokki(*args)
    )


def calls(app: App) -> list[str]:
    folder = app.root / "state" / "calls"
    found = sorted(p.name.split(".")[0] for p in folder.iterdir()) if folder.is_dir() else []
    shutil.rmtree(folder, ignore_errors=True)
    return found


@pytest.mark.parametrize(("ref", "params"), CASES, ids=[r.rsplit(":", 1)[-1] for r, _ in CASES])
def test_invoke_prints_what_run_prints(app: App, ref: str, params: tuple[str, ...]) -> None:
    args = [a for p in params for a in ("-p", p)]
    remote = lokki(app, "invoke", ref, *args)
    assert remote.returncode == 0, remote.stderr
    local = lokki(app, "run", ref, "-q", "--store", str(app.root / "local-runs"), *args)
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout and remote.stdout.strip()
    assert re.search(r"^run \S+ succeeded", remote.stderr, flags=re.M), remote.stderr


def test_a_failing_batch_item_names_step_item_and_exit_code_and_resume_recomputes_only_it(app: App) -> None:
    """LocalStack lets a Distributed Map succeed with a failed item (docs/deploy.md): the aggregation
    fails on the missing item, and the message adds the item's failed Batch job, found in its queue."""
    (app.root / "state").mkdir(exist_ok=True)
    (app.root / "state" / "flag").touch()
    calls(app)
    failed = lokki(app, "invoke", "src/mixed.py", "-p", "offset=2")
    assert failed.returncode == 1 and failed.stdout == "" and "Traceback" not in failed.stderr, failed.stderr
    job = re.search(
        r"^  failed job: step shift \(map item 3\): ValueError: 9 is not ready \(Batch job (\S+) exited 1\)\n"
        rf"    logs: CloudWatch log group /aws/batch/{STACK}/mixed/shift, stream (shift/default/\S+)$",
        failed.stderr,
        flags=re.M,
    )
    assert job, failed.stderr
    run_id = re.search(r"run (mixed-\S+) failed", failed.stderr)
    assert run_id
    run = run_id.group(1)
    assert "shift-9" in calls(app)
    # The job's own log stream holds the user's traceback.
    events = app.client("logs").get_log_events(
        logGroupName=f"/aws/batch/{STACK}/mixed/shift", logStreamName=job.group(2)
    )
    assert any('raise ValueError(f"{x} is not ready")' in e["message"] for e in events["events"])
    listed = {r["run_id"]: r for r in json.loads(lokki(app, "runs", "mixed", "--json").stdout)}
    assert listed[run]["status"] == "FAILED" and listed[run]["resumable"]
    result = lokki(app, "result", run, "--flow", "src/mixed.py")
    assert result.returncode == 1 and "failed job: step shift (map item 3): ValueError: 9 is not ready" in result.stderr
    item = lokki(app, "logs", run, "--flow", "src/mixed.py", "--step", "shift", "--item", "3")
    assert "ERROR   shift items 3  step failed" in item.stdout and "ValueError: 9 is not ready" in item.stdout

    (app.root / "state" / "flag").unlink()  # the cause is fixed
    resumed = lokki(app, "invoke", "src/mixed.py", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    assert calls(app) == ["shift-9", "square-3", "total"]  # item 3 and the aggregation: the rest is reused
    local = lokki(app, "run", "src/mixed.py", "-q", "-p", "offset=2", "--store", str(app.root / "local-runs"))
    assert resumed.stdout == local.stdout == f"sum={sum(x * x + 2 for x in range(6))}\n"
    records = lokki(app, "logs", run, "--flow", "src/mixed.py", "--step", "shift", "--item", "3", "--json")
    found = [(r["message"], r["execution"]) for r in map(json.loads, records.stdout.splitlines())]
    assert ("step failed", run) in found and ("step finished", f"{run}.resume-1") in found


def test_a_failing_batch_step_outside_maps_names_its_job_and_log(app: App) -> None:
    """A Batch Task's failure cause is its job: the message shows the step's exception from the job's
    log, the exit code, and where the log is."""
    failed = lokki(app, "invoke", "src/batch_mixed.py:batch_single", "-p", "n=2", "-p", "label=boom")
    assert failed.returncode == 1, failed.stderr
    assert "  step: total\n" in failed.stderr, failed.stderr
    assert re.search(r"^  error: RuntimeError: no boom allowed: Batch job \S+ exited 1$", failed.stderr, flags=re.M)
    assert re.search(
        rf"^  logs: CloudWatch log group /aws/batch/{STACK}/batch_single/total, stream total/default/\S+$",
        failed.stderr,
        flags=re.M,
    ), failed.stderr
    assert "lokki-sam logs batch_single-" in failed.stderr and "--step total" in failed.stderr
    local = lokki(app, "run", "src/batch_mixed.py:batch_single", "-q", "-p", "n=2", "-p", "label=boom")
    assert local.returncode == 1 and "RuntimeError: no boom allowed" in local.stderr


def test_logs_and_result_of_batch_steps(app: App) -> None:
    done = lokki(app, "invoke", "src/batch_mixed.py:batch_only", "--json", "-p", "n=4")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)["run_id"]
    records = lokki(app, "logs", run, "--flow", "src/batch_mixed.py:batch_only", "--json")
    found = [json.loads(line) for line in records.stdout.splitlines()]
    finished = {(r["node"], tuple(map(tuple, r.get("items") or ()))) for r in found if r["message"] == "step finished"}
    assert ("numbers", ()) in finished and ("total", ()) in finished
    assert {items for node, items in finished if node == "shift"} == {((i, i),) for i in range(4)}
    assert all(r["log_group"].startswith(f"/aws/batch/{STACK}/batch_only/") for r in found)
    step = lokki(app, "result", run, "--flow", "src/batch_mixed.py:batch_only", "--step", "shift", "--json")
    assert json.loads(step.stdout)["result"] == [x**3 + 1 for x in range(4)]
