"""The Serverless Framework journey on the local cloud of `lokki-sam emulator start`, no Docker, no AWS.

Every example flow (and the failing and resumable flows of test_journey.py) goes through
`lokki-sam generate --target serverless` -> `lokki-sam emulator start` (LocalStack, lokki-sam's
host executor runs the real handler code) -> `osls deploy --stage local` (serverless-localstack
sends the framework to AWS_ENDPOINT_URL) -> `lokki-sam invoke --config-env local`, whose printed
result must equal `lokki-sam run`'s. `runs`, `result`, `logs` and `--resume` find the flow from the
framework's stack, `<service>-<stage>`, read from serverless.yml (lokki.toml `target = "serverless"`);
`osls invoke stepf` (the framework's own way) starts an execution too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lokki_sam.emulator.process import free_port
from tests.support.emulator import exported
from tests.support.sam import EXAMPLES, REPO
from tests.support.serverless import OSLS, osls
from tests.test_journey import BIN, RESUMABLE, calls, example_refs

pytestmark = [pytest.mark.journey, pytest.mark.emulator, pytest.mark.external, pytest.mark.cli]

SERVICE = "lokki-sls-journey"
STAGE = "local"
STACK = f"{SERVICE}-{STAGE}"


@dataclass
class App:
    root: Path
    env: dict[str, str]

    def lokki(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "lokki-sam"), *args], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def cloud(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A cloud command against the `local` stage (the framework's --stage, lokki-sam's --config-env)."""
        return self.lokki(*args, "--config-env", STAGE)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    if not OSLS.exists():
        pytest.fail("osls is not installed: run `npm ci` in the repository (package.json pins it)")
    root = tmp_path_factory.mktemp("sls") / SERVICE  # the folder names the service
    src = root / "src"
    src.mkdir(parents=True)
    for path in EXAMPLES:
        shutil.copy(path, src / path.name)
    shutil.copytree(REPO / "examples" / "data", src / "data")
    shutil.copy(REPO / "tests" / "flows" / "faulty.py", src / "faulty.py")
    (src / "resumable.py").write_text(RESUMABLE.format(state=root / "resume-state"))
    (root / "lokki.toml").write_text('target = "serverless"\n')
    home = root.parent / "home"
    home.mkdir()
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
    }
    modules = [f"src/{p.name}" for p in EXAMPLES] + ["src/faulty.py", "src/resumable.py"]
    generated = subprocess.run(
        [str(BIN / "lokki-sam"), "generate", *modules], cwd=root, env=env, capture_output=True, text=True
    )
    assert generated.returncode == 0, generated.stderr
    start = [str(BIN / "lokki-sam"), "emulator", "start", "--port", str(free_port())]
    started = subprocess.run(start, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, started.stderr
    try:
        deployed = env | exported(started.stdout)
        done = osls(root, "deploy", "--stage", STAGE, env=deployed, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"Service deployed to stack {STACK}" in done.stdout + done.stderr
        yield App(root, deployed)
    finally:
        stopped = subprocess.run(
            [str(BIN / "lokki-sam"), "emulator", "stop"], cwd=root, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize("ref", example_refs(), ids=lambda r: r.split(":")[1])
def test_invoke_prints_what_run_prints(app: App, ref: str) -> None:
    remote = app.cloud("invoke", ref)
    assert remote.returncode == 0, remote.stderr
    local = app.lokki("run", ref, "-q", "--store", str(app.root / "local-runs"))
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout and "succeeded" in remote.stderr


def test_runs_result_and_the_stack_from_serverless_yml(app: App) -> None:
    started = app.cloud("invoke", "src/birds.py", "--json", "-p", "limit=2")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    rows = {row["run_id"]: row for row in json.loads(app.cloud("runs", "birds", "--json").stdout)}
    assert rows[run_id]["status"] == "SUCCEEDED"
    result = app.cloud("result", run_id, "--flow", "src/birds.py")
    assert (result.returncode, result.stdout) == (0, "flappy goose, flappy duck\n")
    # Without --config-env, the stage is serverless.yml's (none: the framework's `dev`): not deployed.
    other = app.lokki("runs", "birds")
    assert other.returncode == 2 and f"no stack '{SERVICE}-dev'" in other.stderr and STACK in other.stderr
    assert "serverless deploy" in other.stderr


def test_a_failing_step_is_named_with_its_exception(app: App) -> None:
    remote = app.cloud("invoke", "src/numeric.py:pi", "-p", "samples=0")
    assert remote.returncode == 1
    assert "step: plan_chunks\n" in remote.stderr
    assert "ValueError: samples and chunks must be >= 1" in remote.stderr, remote.stderr


def test_a_failed_run_resumes_and_its_logs_are_found(app: App) -> None:
    flag = app.root / "resume-state" / "flag"
    flag.parent.mkdir(exist_ok=True)
    flag.touch()
    calls(app)
    failed = app.cloud("invoke", "src/resumable.py", "--json")
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stderr.splitlines()[0])["run_id"]
    assert {"fragile-1", "fragile-5", "fragile-9"} <= set(calls(app))
    flag.unlink()  # the cause is fixed
    resumed = app.cloud("invoke", "src/resumable.py", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert calls(app) == ["fragile-1", "fragile-5", "fragile-9", "total"]
    assert json.loads(resumed.stdout)["result"] == sum(x * x for x in range(12))
    # The functions are the framework's (`<Key>LambdaFunction`); logs finds their log groups.
    text = app.cloud("logs", run_id, "--flow", "src/resumable.py", "--step", "fragile", "--item", "9")
    assert text.returncode == 0, text.stderr
    assert "fragile items 9  step failed" in text.stdout, text.stdout
    assert "RuntimeError: item 9 is not ready" in text.stdout


def test_the_frameworks_own_invoke(app: App) -> None:
    """`serverless invoke stepf` starts an execution: its output is the state (references, not the result)."""
    done = osls(app.root, "invoke", "stepf", "--name", "birds", "--data", '{"limit": 2}', "--stage", STAGE, env=app.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status": "SUCCEEDED"' in done.stdout and re.search(r"manifest\.json", done.stdout)


def test_serverless_invoke_local_runs_the_steps_in_flow_order(app: App) -> None:
    """`serverless invoke local` runs each step in this Python against the stack's bucket: the events of
    a flow share one run id, so invoking them in flow order runs the whole flow."""
    local_env = app.env | {"PATH": f"{BIN}:{app.env['PATH']}"}  # python3: the one with lokki-sam
    outputs = []
    for key, event in (("BirdsGetBirds", "get_birds"), ("BirdsFlap", "flap"), ("BirdsJoin", "join")):
        done = osls(
            app.root, "invoke", "local", "-f", key, "-p", f"events/birds/{event}.json", "--stage", STAGE,
            "-e", f"LOKKI_ENDPOINT_URL={app.env['AWS_ENDPOINT_URL']}", env=local_env,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        outputs.append(done.stdout)
    assert '"node": "join"' in outputs[-1]
    import boto3

    s3 = boto3.client("s3", endpoint_url=app.env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(f"{STACK}-artifactbucket"))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"lokki/{STACK}/birds/sample-run/")["Contents"]]
    assert {step for step in ("get_birds", "flap", "join") if any(f"/step={step}/" in k for k in keys)} == {
        "get_birds",
        "flap",
        "join",
    }, keys
