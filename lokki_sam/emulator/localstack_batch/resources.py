"""CloudFormation resource providers for `AWS::Batch::ComputeEnvironment`, `JobQueue` and
`JobDefinition`, so `sam deploy` creates them on the local cloud (LocalStack finds them under
`localstack.cloudformation.resource_providers`). Each calls the Batch API as AWS CloudFormation
does, with the template's properties in the API's spelling (`MaxvCpus` -> `maxvCpus`).

`Ref` gives each resource's ARN, as AWS documents for all three (the job definition's with its
revision); `Fn::GetAtt` gives the `...Arn` and `...Name` attributes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import localstack.services.cloudformation.provider_utils as util  # type: ignore[import-not-found]
from localstack.services.cloudformation.resource_provider import (  # type: ignore[import-not-found]
    CloudFormationResourceProviderPlugin,
    OperationStatus,
    ProgressEvent,
    ResourceProvider,
)

# Maps of the user's own keys, kept as written (every other key takes the API's camelCase).
FREE_MAPS = frozenset({"Tags", "Parameters", "Options", "DriverOpts", "Labels", "Annotations"})


def api_spelling(value: Any) -> Any:
    """CloudFormation's PascalCase properties as the Batch API's camelCase members."""
    if isinstance(value, list):
        return [api_spelling(v) for v in value]
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: (v if k in FREE_MAPS else api_spelling(v)) for k, v in value.items()}
    return value


def _schema(type_name: str, arn: str, name: str, create_only: tuple[str, ...]) -> dict[str, Any]:
    return {
        "typeName": type_name,
        "primaryIdentifier": [f"/properties/{arn}"],
        "readOnlyProperties": [f"/properties/{arn}"],
        "createOnlyProperties": [f"/properties/{p}" for p in (name, *create_only)],
    }


class BatchResource(ResourceProvider):  # type: ignore[misc]  # LocalStack's class: untyped here
    """What the three share: a name made up when the template gives none, ARN and name in the model."""

    NAME: ClassVar[str]
    ARN: ClassVar[str]

    def _name(self, request: Any) -> str:
        model = request.desired_state
        if not model.get(self.NAME):
            model[self.NAME] = util.generate_default_name(request.stack_name, request.logical_resource_id)
        return str(model[self.NAME])

    def _done(self, request: Any, **model: Any) -> Any:
        return ProgressEvent(
            status=OperationStatus.SUCCESS,
            resource_model={**request.desired_state, **model},
            custom_context=request.custom_context,
        )

    def read(self, request: Any) -> Any:
        return self._done(request)


class ComputeEnvironmentProvider(BatchResource):
    TYPE = "AWS::Batch::ComputeEnvironment"
    NAME, ARN = "ComputeEnvironmentName", "ComputeEnvironmentArn"
    SCHEMA = _schema(TYPE, ARN, NAME, ("Type",))

    def create(self, request: Any) -> Any:
        name = self._name(request)
        params = api_spelling(
            util.select_attributes(request.desired_state, ["Type", "State", "ComputeResources", "ServiceRole", "Tags"])
        )
        created = request.aws_client_factory.batch.create_compute_environment(computeEnvironmentName=name, **params)
        return self._done(request, **{self.ARN: created["computeEnvironmentArn"], self.NAME: name})

    def update(self, request: Any) -> Any:
        model, batch = request.desired_state, request.aws_client_factory.batch
        arn = request.previous_state[self.ARN]
        params = api_spelling(util.select_attributes(model, ["State", "ServiceRole"]))
        batch.update_compute_environment(computeEnvironment=arn, **params)
        return self._done(request, **{self.ARN: arn, self.NAME: request.previous_state[self.NAME]})

    def delete(self, request: Any) -> Any:
        batch, arn = request.aws_client_factory.batch, request.desired_state[self.ARN]
        batch.update_compute_environment(computeEnvironment=arn, state="DISABLED")
        batch.delete_compute_environment(computeEnvironment=arn)
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})


class JobQueueProvider(BatchResource):
    TYPE = "AWS::Batch::JobQueue"
    NAME, ARN = "JobQueueName", "JobQueueArn"
    SCHEMA = _schema(TYPE, ARN, NAME, ("JobQueueType",))
    FIELDS = ("Priority", "State", "ComputeEnvironmentOrder", "SchedulingPolicyArn")

    def create(self, request: Any) -> Any:
        name = self._name(request)
        params = api_spelling(util.select_attributes(request.desired_state, [*self.FIELDS, "Tags"]))
        created = request.aws_client_factory.batch.create_job_queue(jobQueueName=name, **params)
        return self._done(request, **{self.ARN: created["jobQueueArn"], self.NAME: name})

    def update(self, request: Any) -> Any:
        arn = request.previous_state[self.ARN]
        params = api_spelling(util.select_attributes(request.desired_state, list(self.FIELDS)))
        request.aws_client_factory.batch.update_job_queue(jobQueue=arn, **params)
        return self._done(request, **{self.ARN: arn, self.NAME: request.previous_state[self.NAME]})

    def delete(self, request: Any) -> Any:
        batch, arn = request.aws_client_factory.batch, request.desired_state[self.ARN]
        batch.update_job_queue(jobQueue=arn, state="DISABLED")
        batch.delete_job_queue(jobQueue=arn)
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})


class JobDefinitionProvider(BatchResource):
    """Every update registers a new revision (and deregisters the one it replaces), as on AWS."""

    TYPE = "AWS::Batch::JobDefinition"
    NAME, ARN = "JobDefinitionName", "JobDefinitionArn"
    SCHEMA = _schema(TYPE, ARN, NAME, ())
    FIELDS = (
        "Type",
        "ContainerProperties",
        "NodeProperties",
        "EksProperties",
        "EcsProperties",
        "Parameters",
        "PlatformCapabilities",
        "PropagateTags",
        "RetryStrategy",
        "SchedulingPriority",
        "Timeout",
        "Tags",
    )

    def create(self, request: Any) -> Any:
        name = self._name(request)
        params = api_spelling(util.select_attributes(request.desired_state, list(self.FIELDS)))
        registered = request.aws_client_factory.batch.register_job_definition(jobDefinitionName=name, **params)
        return self._done(request, **{self.ARN: registered["jobDefinitionArn"], self.NAME: name})

    def update(self, request: Any) -> Any:
        request.desired_state.setdefault(self.NAME, request.previous_state[self.NAME])
        event = self.create(request)
        request.aws_client_factory.batch.deregister_job_definition(jobDefinition=request.previous_state[self.ARN])
        return event

    def delete(self, request: Any) -> Any:
        request.aws_client_factory.batch.deregister_job_definition(jobDefinition=request.desired_state[self.ARN])
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})


class _Plugin(CloudFormationResourceProviderPlugin):  # type: ignore[misc]
    provider: ClassVar[type[BatchResource]]

    def __init__(self) -> None:
        self.factory: type[BatchResource] | None = None

    def load(self) -> None:
        self.factory = self.provider


class ComputeEnvironmentPlugin(_Plugin):
    name = ComputeEnvironmentProvider.TYPE
    provider = ComputeEnvironmentProvider


class JobQueuePlugin(_Plugin):
    name = JobQueueProvider.TYPE
    provider = JobQueueProvider


class JobDefinitionPlugin(_Plugin):
    name = JobDefinitionProvider.TYPE
    provider = JobDefinitionProvider


PLUGINS = (ComputeEnvironmentPlugin, JobQueuePlugin, JobDefinitionPlugin)
