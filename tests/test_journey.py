"""The whole SAM journey on both local clouds, no Docker, no AWS account.

Every example flow (plus the 500-item `batched` shape and the failing flows of
tests/flows/faulty.py) goes through `lokki-sam generate` -> `sam build` -> `lokki-sam emulator
start` -> `sam deploy` -> `lokki-sam invoke`, whose printed result must equal `lokki-sam run`'s,
on ministack and on LocalStack (with lokki-sam's host executor: both run the real handler code).
Also: failing runs (exit 1, step and exception shown), `runs`, `result`, an aborted run and an
expired result, and where the engines differ (errors inside DISTRIBUTED maps, Retry on a class).
All the flows share one app: one build, and one deploy per engine, keep this test short.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lokki_sam.emulator.process import free_port
from tests.support.emulator import exported
from tests.support.sam import EXAMPLES, REPO

BIN = Path(sys.executable).parent
STACK = "lokki-journey"
BIG_MAP = 500
ENGINES = ("ministack", "localstack")


def example_refs() -> list[str]:
    """One FLOW_REF per flow of every example module (read without importing: `@flow` + def)."""
    refs = []
    for path in EXAMPLES:
        names = re.findall(r"^@flow[^\n]*\ndef (\w+)\(", path.read_text(), flags=re.M)
        refs += [f"src/{path.name}:{name}" for name in names]
    return refs


# (FLOW_REF, params): every example flow with its defaults, and a 500-item map.
# (Flows given params: here, and the --json test. Each concurrent map item cold-starts a Lambda
# worker on ministack, the bulk of this test's time: keep the cases few.)
CASES = [(ref, ()) for ref in example_refs()] + [("src/shapes.py:batched", (f"n={BIG_MAP}",))]


@dataclass
class App:
    root: Path
    env: dict[str, str]
    engine: str

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    def lokki(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "lokki-sam"), *args], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.env["AWS_DEFAULT_REGION"])


def run_tool(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


# LocalStack's ASL grammar has no ItemBatcher: a state machine with a batched map (batch_size > 1)
# is rejected at creation and the whole stack rolls back. Its app leaves the batched flow out.
BATCHED = "src/shapes.py:batched"
NO_ITEMBATCHER = "LocalStack's Step Functions has no ItemBatcher (docs/deploy.md)"


# A flow whose map items 1, 5 and 9 fail while a flag file exists; every call leaves a file in
# calls/ (the Lambdas are host processes on both engines), so a test counts what ran where.
RESUMABLE = """
import uuid
from pathlib import Path

from lokki_sam import flow, step

STATE = Path("{state}")


def called(what: str) -> None:
    (STATE / "calls").mkdir(parents=True, exist_ok=True)
    (STATE / "calls" / f"{{what}}.{{uuid.uuid4().hex}}").touch()


@step
def numbers(n: int = 12) -> list[int]:
    called("numbers")
    return list(range(n))


@step
def fragile(x: int) -> int:
    called(f"fragile-{{x}}")
    if x % 4 == 1 and (STATE / "flag").exists():
        raise RuntimeError(f"item {{x}} is not ready")
    return x * x


@step
def total(xs: list[int]) -> int:
    called("total")
    return sum(xs)


@flow
def resumable(n: int = 12):
    return numbers(n=n).map(fragile).agg(total)
"""


def build_app(root: Path, with_batched: bool) -> dict[str, str]:
    """The example app generated and built in `root` (no cloud needed yet); its environment."""
    src = root / "src"
    src.mkdir()
    for path in EXAMPLES:
        shutil.copy(path, src / path.name)
    shutil.copytree(REPO / "examples" / "data", src / "data")
    shutil.copy(REPO / "tests" / "flows" / "shapes.py", src / "shapes.py")
    shutil.copy(REPO / "tests" / "flows" / "faulty.py", src / "faulty.py")
    (src / "resumable.py").write_text(RESUMABLE.format(state=root / "resume-state"))
    (src / "requirements.txt").write_text("# the functions' own dependencies: none (lokki-sam comes in a layer)\n")
    (root / "samconfig.toml").write_text(
        f'version = 0.1\n\n[default.deploy.parameters]\nstack_name = "{STACK}"\nresolve_s3 = true\n'
        'capabilities = "CAPABILITY_IAM CAPABILITY_NAMED_IAM"\nconfirm_changeset = false\n'
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
    }
    modules = [f"src/{p.name}" for p in EXAMPLES] + [BATCHED] * with_batched + ["src/faulty.py", "src/resumable.py"]
    run_tool([str(BIN / "lokki-sam"), "generate", *modules], root, env)
    run_tool([str(BIN / "sam"), "build"], root, env | {"PIP_NO_INDEX": "1"}, timeout=600)  # lokki-sam: its layer
    return env


@pytest.fixture(scope="module", params=ENGINES)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app built and deployed to a fresh emulator that `lokki-sam emulator start` runs (and
    `lokki-sam emulator stop` ends afterwards, also on failure)."""
    engine = request.param
    root = tmp_path_factory.mktemp(f"journey-{engine}")
    env = build_app(root, with_batched=engine != "localstack")
    # Its Lambdas run under ministack's venv Python: `start` takes it from template.yaml's Runtime.
    runtime = re.search(r"Runtime: python(3\.\d+)", (root / "template.yaml").read_text())
    assert runtime, "no python runtime in the template"
    start = [str(BIN / "lokki-sam"), "emulator", "start", "--engine", engine, "--port", str(free_port())]
    started = subprocess.run(start, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, started.stderr
    assert f"{engine} " in started.stderr and " ready on http://127.0.0.1:" in started.stderr
    if engine == "ministack":
        assert f"Python {runtime.group(1)}" in started.stderr
    try:
        deployed = env | exported(started.stdout)
        # sam deploy reads the stack name and its options from samconfig.toml, as users run it.
        out = run_tool([str(BIN / "sam"), "deploy"], root, deployed, timeout=900)
        assert f"Successfully created/updated stack - {STACK}" in out
        yield App(root, deployed, engine)
    finally:
        stopped = subprocess.run(
            [str(BIN / "lokki-sam"), "emulator", "stop", "--engine", engine], cwd=root, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize(
    ("ref", "params"), CASES, ids=[f"{r.split(':')[1]}{'-' * bool(p)}{'-'.join(p)}" for r, p in CASES]
)
def test_invoke_prints_what_run_prints(app: App, ref: str, params: tuple[str, ...]) -> None:
    if app.engine == "localstack" and ref == BATCHED:
        pytest.skip(NO_ITEMBATCHER)
    args = [a for p in params for a in ("-p", p)]
    remote = app.lokki("invoke", ref, *args)
    assert remote.returncode == 0, remote.stderr
    local = app.lokki("run", ref, "-q", "--store", str(app.root / "local-runs"), *args)
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
    assert "succeeded" in remote.stderr  # progress went to stderr, the result alone to stdout
    if ref.endswith(":batched"):
        assert f"{BIG_MAP}/{BIG_MAP} items succeeded, 0 failed" in remote.stderr
        # Progress counts against the map's real size, never the items started so far.
        totals = re.findall(r"^\s+map-\S+ \d+/(\d+) \(\d+%\)", remote.stderr, flags=re.M)
        assert set(totals) <= {str(BIG_MAP)}, remote.stderr


def test_failing_map_item_shows_step_error_and_logs(app: App) -> None:
    remote = app.lokki("invoke", "src/numeric.py:zscores", "-p", "series=1", "-p", "length=0")
    assert remote.returncode == 1, remote.stderr
    assert remote.stdout == ""
    assert "Traceback" not in remote.stderr
    if app.engine == "ministack":
        assert "step: standardise (map item 0)" in remote.stderr
        assert "StatisticsError: fmean requires at least one data point" in remote.stderr, remote.stderr
        assert "logs: CloudWatch log group " in remote.stderr
    else:
        # LocalStack reports a DISTRIBUTED map whose item failed as SUCCEEDED: the open map's
        # result, read by invoke, lacks the item, and that read fails naming it and its exception.
        assert "map 'map-fetch_series' is incomplete: 1 of 1 item(s) have no output of step 'standardise'" in (
            remote.stderr
        ), remote.stderr
        assert "item 0: StatisticsError: fmean requires at least one data point (step 'standardise')" in remote.stderr
        assert "--resume zscores-" in remote.stderr
    local = app.lokki("run", "src/numeric.py:zscores", "-q", "-p", "series=1", "-p", "length=0")
    assert local.returncode == 1
    assert "StatisticsError: fmean requires at least one data point" in local.stderr


def test_failing_map_item_before_an_agg(app: App) -> None:
    remote = app.lokki("invoke", "src/faulty.py:faulty", "-p", "bad=2")
    assert remote.returncode == 1, remote.stderr
    assert remote.stdout == "" and "Traceback" not in remote.stderr
    # On LocalStack the map "succeeds" and the agg step finds item 2 missing; the item's own record
    # says what failed, as AWS (and ministack) report it.
    assert "step: check (map item 2)" in remote.stderr, remote.stderr
    assert "error: ValueError: item 2 is bad" in remote.stderr
    assert "MapIncomplete" not in remote.stderr and "--resume faulty-" in remote.stderr
    ok = app.lokki("invoke", "src/faulty.py:faulty")
    assert (ok.returncode, ok.stdout) == (0, "60\n"), ok.stderr


def test_retry_matches_where_the_error_is_the_exception_class(app: App) -> None:
    remote = app.lokki("invoke", "src/faulty.py:refused")
    assert remote.returncode == 1
    assert "ValueError: refused, as always" in remote.stderr, remote.stderr
    run_id = re.search(r"run (refused-\S+) failed", remote.stderr)
    assert run_id
    arn = next(o for o in stack_outputs(app) if o["OutputKey"] == "RefusedStateMachineArn")["OutputValue"]
    execution = arn.replace(":stateMachine:", ":execution:") + f":{run_id.group(1)}"
    events = app.client("stepfunctions").get_execution_history(executionArn=execution)["events"]
    errors = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    # `Retry(exceptions=(ValueError,))` becomes ErrorEquals ["ValueError"]: it matches only where
    # the error is the class name. ministack reports every Python exception as Runtime.HandlerError.
    assert errors == (["ValueError", "ValueError"] if app.engine == "localstack" else ["Runtime.HandlerError"])
    # Where it did not match, the failure says so and why.
    said = "note: the step's Retry on ValueError did not apply: this engine reported the ValueError as"
    assert (said in remote.stderr) == (app.engine == "ministack"), remote.stderr


def test_failing_step_outside_maps_and_result_of_the_failed_run(app: App) -> None:
    remote = app.lokki("invoke", "src/numeric.py:pi", "-p", "samples=0")
    assert remote.returncode == 1
    assert "step: plan_chunks\n" in remote.stderr
    assert "ValueError: samples and chunks must be >= 1" in remote.stderr, remote.stderr
    run_id = re.search(r"run (pi-\S+) failed", remote.stderr)
    assert run_id
    again = app.lokki("result", run_id.group(1), "--flow", "src/numeric.py:pi")
    assert again.returncode == 1
    assert "ValueError: samples and chunks must be >= 1" in again.stderr
    # The function's log (its LoggingConfig.LogGroup) holds the traceback, where invoke says it is.
    group = re.search(r"logs: CloudWatch log group (\S+)", remote.stderr)
    assert group, remote.stderr
    events = app.client("logs").filter_log_events(logGroupName=group.group(1))["events"]
    assert any("samples and chunks must be >= 1" in e["message"] for e in events)
    logs = run_tool([str(BIN / "sam"), "logs", "-n", "PiPlanChunksFunction", "--stack-name", STACK], app.root, app.env)
    assert "ValueError: samples and chunks must be >= 1" in logs


def test_bad_params_are_refused_before_starting(app: App) -> None:
    before = app.lokki("runs", "zscores", "--json")
    bad = app.lokki("invoke", "src/numeric.py:zscores", "-p", "series=many")
    assert bad.returncode == 2
    assert "parameter 'series' expects int" in bad.stderr
    assert app.lokki("runs", "zscores", "--json").stdout == before.stdout


def test_json_runs_and_result(app: App, tmp_path: Path) -> None:
    started = app.lokki("invoke", "src/birds.py", "--json", "-p", "limit=2")
    assert started.returncode == 0, started.stderr
    payload = json.loads(started.stdout)
    assert payload["result"] == "flappy goose, flappy duck"
    assert payload["params"] == {"limit": 2}
    events = [json.loads(line)["event"] for line in started.stderr.splitlines()]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    run_id = payload["run_id"]

    listed = app.lokki("runs", "birds", "--json", "--limit", "50")
    rows = {row["run_id"]: row for row in json.loads(listed.stdout)}
    assert rows[run_id]["status"] == "SUCCEEDED"
    assert rows[run_id]["params"] == {"limit": 2}
    table = app.lokki("runs")
    assert run_id in table.stdout and "succeeded" in table.stdout

    result = app.lokki("result", run_id, "--flow", "src/birds.py")
    assert (result.returncode, result.stdout) == (0, "flappy goose, flappy duck\n")
    step = app.lokki("result", run_id, "--flow", "src/birds.py", "--step", "flap", "-o", str(tmp_path / "flap.json"))
    assert step.returncode == 0, step.stderr
    assert json.loads((tmp_path / "flap.json").read_text()) == ["flappy goose", "flappy duck"]

    # The bucket's lifecycle rule expires artifacts; the run is still listed, its result is gone.
    s3 = app.client("s3")
    bucket = next(o for o in stack_outputs(app) if o["OutputKey"] == "ArtifactBucketName")["OutputValue"]
    keys = s3.list_objects_v2(Bucket=bucket, Prefix=f"lokki/{STACK}/birds/{run_id}/")["Contents"]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k["Key"]} for k in keys]})
    expired = app.lokki("result", run_id, "--flow", "src/birds.py")
    assert expired.returncode == 2
    assert f"the result of run {run_id} is no longer in s3://{bucket}/lokki/{STACK}/birds/{run_id}/" in expired.stderr
    assert "artifact_expiry_days" in expired.stderr


def stack_outputs(app: App) -> list[dict[str, str]]:
    cfn = app.client("cloudformation")
    outputs: list[dict[str, str]] = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
    return outputs


def test_aborted_run(app: App) -> None:
    started = app.lokki("invoke", "src/numeric.py:pi", "--no-wait", "-p", "samples=5000000", "-p", "chunks=1")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    sfn = app.client("stepfunctions")
    arn = next(o for o in stack_outputs(app) if o["OutputKey"] == "PiStateMachineArn")["OutputValue"]
    execution = arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
    sfn.stop_execution(executionArn=execution, error="Stopped", cause="by the journey test")
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    result = app.lokki("result", run_id, "--flow", "src/numeric.py:pi")
    assert result.returncode == 1
    assert f"run {run_id} was aborted" in result.stderr


def test_unknown_stack_and_flow_list_what_exists(app: App) -> None:
    stack = app.lokki("runs", "--stack-name", "nope")
    assert stack.returncode == 2
    assert "no stack 'nope'" in stack.stderr and STACK in stack.stderr
    flow = app.lokki("runs", "nope")
    assert flow.returncode == 2
    deployed = ["batched"] * (app.engine != "localstack") + ["birds", "faulty", "pi", "refused", "resumable"]
    deployed += ["wordcount", "zscores"]
    assert f"flows deployed there: {', '.join(deployed)}" in flow.stderr, flow.stderr  # flow names, as everywhere


# ------------------------------------------------------------------------ resume and logs


def calls(app: App) -> list[str]:
    folder = app.root / "resume-state" / "calls"
    found = sorted(p.name.split(".")[0] for p in folder.iterdir()) if folder.is_dir() else []
    shutil.rmtree(folder, ignore_errors=True)
    return found


def test_a_failed_run_resumes_recomputing_only_what_failed_and_its_logs_are_its_own(app: App) -> None:
    flag = app.root / "resume-state" / "flag"
    flag.parent.mkdir(exist_ok=True)
    flag.touch()
    calls(app)
    failed = app.lokki("invoke", "src/resumable.py", "--json")
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stderr.splitlines()[0])["run_id"]
    assert {"fragile-1", "fragile-5", "fragile-9"} <= set(calls(app))
    listed = {r["run_id"]: r for r in json.loads(app.lokki("runs", "resumable", "--json").stdout)}
    assert listed[run_id]["resumable"] and listed[run_id]["resume"].endswith(f"--resume {run_id}")

    flag.unlink()  # the cause is fixed
    resumed = app.lokki("invoke", "src/resumable.py", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    # Only the failed items and the step after the map ran again: the source was reused.
    assert calls(app) == ["fragile-1", "fragile-5", "fragile-9", "total"]
    local = app.lokki("run", "src/resumable.py", "-q", "--json", "--store", str(app.root / "local-runs"))
    assert json.loads(resumed.stdout)["result"] == json.loads(local.stdout)["result"] == sum(x * x for x in range(12))
    again = app.lokki("invoke", "src/resumable.py", "--resume", run_id)
    assert again.returncode == 2 and "succeeded: nothing to resume" in again.stderr

    other = app.lokki("invoke", "src/resumable.py", "--json", "-p", "n=2")
    assert other.returncode == 0, other.stderr
    other_id = json.loads(other.stdout)["run_id"]
    records = logs(app, run_id)
    assert {r["run_id"] for r in records} == {run_id}  # nothing of the other run
    assert {r["execution"] for r in records} == {run_id, f"{run_id}.resume-1"}
    assert {r["node"] for r in records} == {"numbers", "fragile", "total"}
    # (On LocalStack the map "succeeds" with failed items, and `total` fails on the missing ones.)
    failures = [r for r in records if r["message"] == "step failed" and r["node"] == "fragile"]
    assert sorted(r["items"][0][0] for r in failures) == [1, 5, 9], failures
    assert all("RuntimeError: item" in r["error"] and r["execution"] == run_id for r in failures)
    item = logs(app, run_id, "--step", "fragile", "--item", "5")
    assert [(r["message"], r["execution"]) for r in item if r["message"] != "step started"] == [
        ("step failed", run_id),
        ("step finished", f"{run_id}.resume-1"),
    ]
    finished = [r for r in records if r["message"] == "step finished"]
    assert all(r["seconds"] >= 0 and r["s3_requests"] > 0 for r in finished)
    assert {r["log_group"] for r in records} > set()
    assert {r["run_id"] for r in logs(app, other_id)} == {other_id}
    text = app.lokki("logs", run_id, "--flow", "src/resumable.py", "--step", "fragile", "--item", "9")
    assert "ERROR   fragile items 9  step failed" in text.stdout and "RuntimeError: item 9 is not ready" in text.stdout
    none = app.lokki("logs", run_id, "--flow", "src/resumable.py", "--step", "nope")
    assert none.returncode == 2 and "flow 'resumable' has no step 'nope'" in none.stderr


def logs(app: App, run_id: str, *args: str) -> list[dict[str, Any]]:
    """The run's records, waiting a little for log events to arrive."""
    deadline = time.monotonic() + 20
    while True:
        out = app.lokki("logs", run_id, "--flow", "src/resumable.py", "--json", *args)
        assert out.returncode == 0, out.stderr
        records = [json.loads(line) for line in out.stdout.splitlines()]
        if (records and any(r["message"] == "step finished" and r["node"] == "total" for r in records)) or (
            args or time.monotonic() > deadline
        ):
            return records
        time.sleep(1)
