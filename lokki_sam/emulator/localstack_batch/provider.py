"""The `batch` service LocalStack's community edition lacks: every operation goes to the moto
Batch backend LocalStack already bundles (found under `localstack.aws.provider` as
`batch:default`), whose jobs `jobs.HostJob` runs for real.

Compute environments: the local cloud has no VPC, instances or service-linked role to check (jobs
run on this machine), so CreateComputeEnvironment checks what Batch checks of the request itself
(name, type, state, compute resource type) and not that its subnets, security groups or roles
exist, which moto would demand.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from localstack.aws.spec import load_service  # type: ignore[import-not-found]
from localstack.services.moto import call_moto  # type: ignore[import-not-found]
from localstack.services.plugins import Service, aws_provider  # type: ignore[import-not-found]

from . import jobs

batch_models: Any = jobs.batch_models
InvalidParameterValueException: Any = importlib.import_module("moto.batch.exceptions").InvalidParameterValueException
mock_random: Any = importlib.import_module("moto.moto_api._internal").mock_random

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
RESOURCE_TYPES = ("EC2", "SPOT", "FARGATE", "FARGATE_SPOT")


class BatchProvider:
    service = "batch"

    def accept_state_visitor(self, visitor: Any) -> None:
        visitor.visit(batch_models.batch_backends)


def _to_moto(context: Any, request: Any) -> Any:
    return call_moto(context)


@aws_provider()  # type: ignore[untyped-decorator]
def batch() -> Any:
    install()
    table = {operation: _to_moto for operation in load_service("batch").operation_names}
    return Service.for_provider(BatchProvider(), dispatch_table_factory=lambda provider: table)


_MOTO_CREATE_JOB_QUEUE = batch_models.BatchBackend.create_job_queue


def install() -> None:
    """Point moto's Batch backend at this module's job runner and request checks."""
    jobs.install()
    batch_models.BatchBackend.create_compute_environment = create_compute_environment
    batch_models.BatchBackend.create_job_queue = create_job_queue


def create_job_queue(
    self: Any,
    queue_name: str,
    priority: Any,
    schedule_policy: Any,
    state: Any,
    compute_env_order: Any,
    tags: Any = None,
) -> Any:
    """moto's (its parameter names: its responses pass them by name), with AWS's default state:
    a queue created without one is ENABLED."""
    return _MOTO_CREATE_JOB_QUEUE(
        self, queue_name, priority, schedule_policy, state or "ENABLED", compute_env_order, tags
    )


def create_compute_environment(
    self: Any,
    compute_environment_name: str,
    _type: str,
    state: str,
    compute_resources: dict[str, Any] | None,
    service_role: str | None,
    tags: dict[str, str] | None = None,
) -> Any:
    """moto's BatchBackend.create_compute_environment, without the checks of VPC resources and
    roles this machine does not have, and without starting EC2 instances."""
    if not NAME_RE.match(compute_environment_name or ""):
        raise InvalidParameterValueException(
            "Compute environment name does not match ^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
        )
    if self.get_compute_environment_by_name(compute_environment_name) is not None:
        raise InvalidParameterValueException(
            f"A compute environment already exists with the name {compute_environment_name}"
        )
    if _type not in ("MANAGED", "UNMANAGED"):
        raise InvalidParameterValueException(f"type {_type} must be one of MANAGED | UNMANAGED")
    if state is not None and state not in ("ENABLED", "DISABLED"):
        raise InvalidParameterValueException(f"state {state} must be one of ENABLED | DISABLED")
    if _type == "MANAGED":
        kind = (compute_resources or {}).get("type")
        if kind not in RESOURCE_TYPES:
            raise InvalidParameterValueException(f"computeResources.type must be one of {' | '.join(RESOURCE_TYPES)}")
    environment = batch_models.ComputeEnvironment(
        compute_environment_name,
        _type,
        state or "ENABLED",
        compute_resources or {},
        service_role or "",
        account_id=self.account_id,
        region_name=self.region_name,
    )
    self._compute_environments[environment.arn] = environment
    if tags:
        self.tag_resource(environment.arn, tags)
    cluster = self.ecs_backend.create_cluster(f"OnDemand_Batch_{mock_random.uuid4()}")
    environment.set_ecs(cluster.arn, cluster.name)
    return environment
