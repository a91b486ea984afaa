"""AWS Batch on the local cloud, through its API: clients, a queue, a job definition, a finished job."""

from __future__ import annotations

import time
from typing import Any

import boto3


def client(endpoint: str, service: str) -> Any:
    """A client of the local cloud with dummy credentials (module fixtures run before the per-test ones)."""
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


def create_queue(batch: Any, name: str, max_vcpus: int = 4) -> None:
    """A Fargate compute environment and a queue, both called `name` (the local cloud checks no VPC)."""
    resources = {"type": "FARGATE", "maxvCpus": max_vcpus, "subnets": ["subnet-1"], "securityGroupIds": ["sg-1"]}
    batch.create_compute_environment(computeEnvironmentName=name, type="MANAGED", computeResources=resources)
    batch.create_job_queue(
        jobQueueName=name, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}]
    )


def register(batch: Any, name: str, image: str, command: list[str]) -> None:
    """A Fargate job definition of the smallest size running `command`."""
    batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": image,
            "command": command,
            "resourceRequirements": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
        },
    )


def finished(batch: Any, job_id: str, timeout: float = 120, poll: float = 0.2) -> dict[str, Any]:
    """The job as DescribeJobs shows it once SUCCEEDED or FAILED (Batch has no waiter to block on)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        if job["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return job
        time.sleep(poll)
