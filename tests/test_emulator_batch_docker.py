"""AWS Batch jobs as containers on lokki-sam's local cloud: LocalStack started with a Docker daemon
runs a job from its image when the daemon has it (`docker run --network host --pull never`), and as a
host process when it does not (`LOKKI_EMULATOR_BATCH_RUNNER=auto`, the default).

The job's image is built offline on the Lambda base image stand-in (tests/support/lambda_image.py:
Debian's Python with boto3 under /var/runtime), its entry point cleared as a Batch image's would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lokki_sam.emulator import control, process
from lokki_sam.emulator.state import Record
from tests.support.docker_daemon import DockerDaemon
from tests.support.lambda_image import LambdaImages
from tests.support.local_batch import client, create_queue, finished, register

pytest_plugins = ["tests.support.docker_fixtures"]
pytestmark = [pytest.mark.docker, pytest.mark.emulator]

IMAGE = "lokki-batch-job:test"
# Where it runs, and that it reaches LocalStack's S3 on 127.0.0.1 from there.
JOB = """
import os, boto3
inside = os.path.exists("/lambda-entrypoint.sh")  # only the image has it (this machine may be a container too)
boto3.client("s3").put_object(Bucket="jobs", Key=os.environ["AWS_BATCH_JOB_ID"], Body=str(inside).encode())
print("in a container" if inside else "on the host")
"""


@pytest.fixture(scope="module")
def job_image(
    docker_daemon: DockerDaemon, lambda_images: LambdaImages, tmp_path_factory: pytest.TempPathFactory
) -> str:
    context = tmp_path_factory.mktemp("job-image")
    (context / "Dockerfile").write_text(f"FROM {lambda_images.tags[0]}\nENTRYPOINT []\nENV PYTHONPATH=/var/runtime\n")
    subprocess.run(
        ["docker", "build", "--network", "none", "-t", IMAGE, str(context)],
        env={**_path_env(), **docker_daemon.env()},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return IMAGE


def _path_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture(scope="module")
def docker_cloud(
    docker_daemon: DockerDaemon, job_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Record]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOKKI_SAM_STATE", str(tmp_path_factory.mktemp("localstack-state")))
        patch.setenv("DOCKER_HOST", docker_daemon.host)  # LocalStack passes it on to its jobs' docker runs
        patch.delenv("LOKKI_EMULATOR_BATCH_RUNNER", raising=False)
        record = control.start("localstack", process.free_port(), None, progress=lambda _: None).record
        try:
            yield record
        finally:
            control.stop("localstack")


def run_job(cloud: Record, image: str, command: list[str]) -> tuple[dict[str, Any], str]:
    batch, s3 = client(cloud.endpoint, "batch"), client(cloud.endpoint, "s3")
    if not batch.describe_job_queues(jobQueues=["q"])["jobQueues"]:
        s3.create_bucket(Bucket="jobs")
        create_queue(batch, "q")
    name = image.replace(":", "-").replace(".", "-")
    register(batch, name, image, command)
    job = finished(batch, batch.submit_job(jobName="probe", jobQueue="q", jobDefinition=name)["jobId"])
    written = (
        s3.get_object(Bucket="jobs", Key=job["jobId"])["Body"].read().decode() if job["status"] == "SUCCEEDED" else ""
    )
    return job, written


def log_of(cloud: Record, job: dict[str, Any]) -> list[str]:
    events = client(cloud.endpoint, "logs").get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"]
    )
    return [e["message"] for e in events["events"]]


def test_a_job_whose_image_the_daemon_has_runs_in_a_container(docker_cloud: Record, job_image: str) -> None:
    job, written = run_job(docker_cloud, job_image, ["/var/lang/bin/python3.11", "-c", JOB])
    assert job["status"] == "SUCCEEDED" and job["container"]["exitCode"] == 0, job
    assert written == "True"
    assert log_of(docker_cloud, job) == [
        f"lokki-sam local cloud: running in a container from {job_image}",
        "in a container",
    ]


def test_a_job_whose_image_is_not_there_runs_on_the_host(docker_cloud: Record) -> None:
    job, written = run_job(docker_cloud, "not-built-here:1", [sys.executable, "-c", JOB])
    assert job["status"] == "SUCCEEDED", job
    assert written == "False" and log_of(docker_cloud, job) == ["on the host"]
    assert json.dumps(job)  # DescribeJobs' answer is plain JSON
