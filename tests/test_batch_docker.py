"""The image of AWS Batch steps, built for real from the Dockerfile `lokki-sam generate` writes, and a
flow's jobs run in it on the local cloud.

No registry is reachable here, so the base image is the Lambda base image stand-in
(tests/support/lambda_image.py: Debian's Python with boto3 under /var/runtime, tagged as AWS's).
`lokki-sam push`'s build (`docker build --platform ...`, the tag the job definitions name) makes an
image whose entry point is the Batch entry point; and the local cloud, started with the Docker
daemon, builds the project's image itself and runs each job of the deployed flow as a container
(`docker run --network host`), through exactly `generate`, `sam build`, `sam deploy` and `invoke`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokki_sam.cloud import push
from lokki_sam.config import load_config
from tests.support.docker_daemon import DockerDaemon
from tests.support.emulator import started_in
from tests.support.lambda_image import LambdaImages, host_architecture
from tests.support.sam import REPO, forget_module, restored_sys_path
from tests.test_journey import BIN, App, run_tool

pytest_plugins = ["tests.support.docker_fixtures"]
pytestmark = [pytest.mark.docker, pytest.mark.emulator, pytest.mark.journey]

STACK = "lokki-batch-docker"
FLOW = "src/batch_mixed.py:batch_only"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, lambda_images: LambdaImages) -> Path:
    """A project with the Batch-only flow, generated for this machine's architecture (the stand-in's)."""
    root = tmp_path_factory.mktemp("batch-docker")
    (root / "src").mkdir()
    (root / "src" / "batch_mixed.py").write_text((REPO / "tests" / "flows" / "batch_mixed.py").read_text())
    (root / "lokki.toml").write_text(
        f'architecture = "{host_architecture()}"\n\n[batch]\nsubnets = ["subnet-0123456789abcdef0"]\n'
        'security_groups = ["sg-0123456789abcdef0"]\n'
    )
    (root / "samconfig.toml").write_text(
        f'version = 0.1\n\n[local.deploy.parameters]\nstack_name = "{STACK}"\nregion = "us-east-1"\n'
        'resolve_s3 = true\ncapabilities = "CAPABILITY_IAM CAPABILITY_NAMED_IAM"\nconfirm_changeset = false\n'
        "fail_on_empty_changeset = false\n"
    )
    run_tool([str(BIN / "lokki-sam"), "generate", FLOW], root, base_env(root))
    return root


def base_env(root: Path) -> dict[str, str]:
    home = root / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "SAM_CLI_TELEMETRY": "0",
        "SAM_CLI_POLL_DELAY": "0.5",
        "LANG": "C.UTF-8",
        "LOKKI_SAM_STATE": str(root / "emulator-state"),
    }


def test_pushs_build_makes_an_image_whose_entry_point_is_the_batch_entry_point(
    project: Path, docker_daemon: DockerDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image `lokki-sam push` would push: tagged as the job definitions name it; run without a
    job's environment, its entry point (lokki-sam's, at the generator's version, beside the flow's
    code) refuses with exit code 2, as a job started by hand would be."""
    monkeypatch.chdir(project)
    for name, value in docker_daemon.env().items():
        monkeypatch.setenv(name, value)
    with restored_sys_path():
        (image,) = push.project_images(project / "template.yaml", load_config(project), "sam")
    forget_module("batch_mixed")
    assert image.steps == tuple(f"batch_only.{s}" for s in ("numbers", "cube", "shift", "total"))
    assert re.search(rf"/\$\{{Repository\}}:{image.tag}\n", (project / "template.yaml").read_text())
    name = f"lokki-batch-test/{STACK}:{image.tag}"
    push.build(image, name, project)
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", name],
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **docker_daemon.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "environment variable(s) LOKKI_NODE, LOKKI_RUN_ID, LOKKI_STAMP not set" in done.stderr
    listed = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", name, "-c",
         "import batch_mixed, lokki_sam; print(lokki_sam.__version__, batch_mixed.__file__)"],
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **docker_daemon.env()},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0 and listed.stdout.split() == ["0.1.0", "/var/task/batch_mixed.py"], listed


@pytest.fixture(scope="module")
def cloud(project: Path, docker_daemon: DockerDaemon) -> Iterator[App]:
    """The project built and deployed to LocalStack started in its folder with the Docker daemon."""
    env = base_env(project) | docker_daemon.env()
    run_tool([str(BIN / "sam"), "build"], project, env | {"PIP_NO_INDEX": "1"}, timeout=600)
    with started_in(project, env) as deployed:
        run_tool([str(BIN / "sam"), "deploy", "--config-env", "local"], project, deployed, timeout=900)
        yield App(project, deployed, "localstack")


def test_the_local_cloud_builds_the_projects_image_and_runs_each_job_in_it(cloud: App) -> None:
    remote = cloud.lokki("invoke", FLOW, "--config-env", "local", "-p", "n=3")
    assert remote.returncode == 0, remote.stderr
    local = cloud.lokki("run", FLOW, "-q", "-p", "n=3", "--store", str(cloud.root / "local-runs"))
    assert remote.stdout == local.stdout == f"sum={sum(x**3 + 1 for x in range(3))}\n"
    logs = cloud.client("logs")
    group = f"/aws/batch/{STACK}/batch_only/cube"
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert len(streams) == 3  # one job per item
    first_lines = [
        logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"][0][
            "message"
        ]
        for s in streams
    ]
    assert all(line.startswith("lokki-sam local cloud: running in a container from ") for line in first_lines)
    built = [
        e["message"]
        for g in logs.describe_log_groups(logGroupNamePrefix=f"/aws/batch/{STACK}/")["logGroups"]
        for s in logs.describe_log_streams(logGroupName=g["logGroupName"])["logStreams"]
        for e in logs.get_log_events(logGroupName=g["logGroupName"], logStreamName=s["logStreamName"])["events"]
        if e["message"].startswith("lokki-sam local cloud: building ")
    ]
    assert len(built) == 1, built  # the image is built once, by the first job, then reused
