"""The deployment model (compile/model.py) as a SAM template: plain dicts with long-form intrinsics.

`TemplateModel` holds only what lokki-sam owns; `merge.py` folds it into an existing template and
writes YAML with short-form tags. The renderer maps each model resource to SAM syntax (one method
per resource class) and decides nothing: every policy is the model's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lokki_sam import names, runlog
from lokki_sam.compile import cfn, images, layers, model
from lokki_sam.compile.cfn import (
    BUCKET_PARAMETER,
    CHECKOV_SKIPS,
    CREATE_BUCKET_CONDITION,
    MARKER,
    MARKER_KEY,
    Justified,
    get_att,
    owned_marker,
    owned_metadata,
    ref,
    sub,
)
from lokki_sam.compile.model import (
    BUCKET_POLICY_ID,
    DESCRIPTION_PREFIX,
    LAMBDA_PYTHONS,
    MAX_FLOW_NAME,
    WILDCARD_REASONS,
    Settings,
    check_runtime,
    default_runtime,
)

# The SAM target's vocabulary, kept importable from here (merge.py, generate.py, tests).
__all__ = [
    "BUCKET_PARAMETER",
    "BUCKET_POLICY_ID",
    "CHECKOV_SKIPS",
    "CREATE_BUCKET_CONDITION",
    "DESCRIPTION_PREFIX",
    "LAMBDA_PYTHONS",
    "MARKER",
    "MARKER_KEY",
    "MAX_FLOW_NAME",
    "OWNED_PROPERTIES",
    "SAM_DERIVED_SUFFIXES",
    "WILDCARD_REASONS",
    "Justified",
    "SamRenderer",
    "Settings",
    "TemplateModel",
    "check_runtime",
    "default_runtime",
    "get_att",
    "owned_ids",
    "owned_marker",
    "owned_metadata",
    "ref",
    "render",
    "sub",
]

Json = Any

# SAM derives these logical IDs from ours; a user resource with such an ID would clash after the transform.
SAM_DERIVED_SUFFIXES = model.DERIVED_SUFFIXES


@dataclass(frozen=True)
class TemplateModel:
    """What lokki-sam owns, by section; each section's keys in rendering order."""

    description: str
    parameters: dict[str, Json]
    conditions: dict[str, Json]
    globals_function: dict[str, Json]
    resources: dict[str, Json]
    outputs: dict[str, Json]
    flows: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)  # flow -> the FLOW_REF it came from
    # (flow, step) -> the layer of the step's own dependencies (generate writes its requirements.txt)
    dependencies: Mapping[tuple[str, str], layers.DependencySet] = field(default_factory=dict)
    # (flow, step) -> the image of an image-packaged step (generate writes its Dockerfile)
    images: Mapping[tuple[str, str], images.ImageSet] = field(default_factory=dict)
    runtime: str = ""

    def as_template(self) -> dict[str, Json]:
        """A complete template with only lokki-sam's parts (what a fresh `generate` writes)."""
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Transform": "AWS::Serverless-2016-10-31",
            "Description": self.description,
            "Parameters": self.parameters,
            "Conditions": self.conditions,
            "Globals": {"Function": self.globals_function},
            "Resources": self.resources,
            "Outputs": self.outputs,
        }


def render(app: model.App) -> TemplateModel:
    return SamRenderer(app).template()


# The properties each emitter sets: lokki-sam owns exactly these on its resources (set when
# generated, removed when no longer generated); merge.py keeps every other property of the user's.
FUNCTION_PROPERTIES = (
    "PackageType",  # Image for image steps (absent: Zip)
    "Description",
    "Role",
    "LoggingConfig",
    "Environment",
    "Layers",  # only the entries lokki-sam adds: a user's own layers in the list are kept
    "MemorySize",
    "Timeout",
    "Architectures",
)
STATE_MACHINE_PROPERTIES = (
    "Name",
    "Type",
    "DefinitionUri",
    "DefinitionSubstitutions",
    "Logging",
    "Tracing",
    "Policies",
    "Events.Schedule",  # only its own event: the user's other Events survive
)
OWNED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::Serverless::Function": FUNCTION_PROPERTIES,
    "AWS::Serverless::StateMachine": STATE_MACHINE_PROPERTIES,
    "AWS::Serverless::LayerVersion": layers.LAYER_PROPERTIES,
    **cfn.OWNED_PROPERTIES,
}


class SamRenderer:
    """Maps each model resource to SAM resources. Logical IDs are the model's own keys."""

    def __init__(self, app: model.App) -> None:
        self.app = app
        self.values = cfn.Intrinsics(lambda resource: resource.key)
        self.globals_function = self._function_globals()
        # Image functions ignore the zip-only Globals (samtranslator refuses them; see images.py).
        self.ignored_globals = [key for key in images.ZIP_ONLY_GLOBALS if key in self.globals_function]

    def template(self) -> TemplateModel:
        app = self.app
        resources: dict[str, Json] = {}
        for resource in app.resources:
            resources.update(self.resource(resource))
        parameters, conditions = cfn.bucket_parameters(app.bucket)
        parameters.update({p.key: cfn.parameter(p) for p in app.parameters})
        outputs = {o.key: {"Description": o.description, "Value": self.values(o.value)} for o in app.outputs}
        return TemplateModel(
            description=app.description,
            parameters=parameters,
            conditions=conditions,
            globals_function=self.globals_function,
            resources=resources,
            outputs=outputs,
            flows=app.flows,
            sources=dict(app.sources),
            dependencies=app.dependencies,
            images=app.images,
            runtime=app.runtime,
        )

    def _function_globals(self) -> dict[str, Json]:
        """Globals.Function: what every function shares. Runtime, Handler, CodeUri and the runtime layer
        only when some function is a zip (image functions ignore them: IgnoreGlobals, images.py)."""
        app, has_zip = self.app, self.app.runtime_layer is not None
        out: dict[str, Json] = {}
        if has_zip:
            out.update({"Runtime": app.runtime, "Handler": names.HANDLER, "CodeUri": app.code_uri})
        out.update({"MemorySize": app.memory, "Timeout": app.timeout})
        if app.runtime_layer is not None:
            # Every zip function carries the lokki-sam runtime; a step's own dependencies are added per function.
            out["Layers"] = [ref(app.runtime_layer.key)]
        if app.tracing:
            out["Tracing"] = "Active"
        return out

    @functools.singledispatchmethod
    def resource(self, resource: object) -> dict[str, Json]:
        raise TypeError(f"the SAM renderer has no method for {type(resource).__name__}")

    @resource.register
    def _bucket(self, bucket: model.ArtifactBucket) -> dict[str, Json]:
        return cfn.bucket_resources(bucket)

    @resource.register
    def _runtime_layer(self, layer: model.RuntimeLayer) -> dict[str, Json]:
        return {layer.key: layers.runtime_layer(layer.runtime, owned_marker())}

    @resource.register
    def _dependency_layer(self, layer: model.DependencyLayer) -> dict[str, Json]:
        return {layer.key: layers.dependency_layer(layer.dependencies, layer.runtime, owned_marker())}

    @resource.register
    def _log_group(self, group: model.LogGroup) -> dict[str, Json]:
        return {group.key: cfn.log_group_resource(group)}

    @resource.register
    def _role(self, role: model.Role) -> dict[str, Json]:
        return {role.key: cfn.role_resource(role, self.values)}

    @resource.register
    def _function(self, function: model.Function) -> dict[str, Json]:
        props: dict[str, Json] = {"PackageType": "Image"} if function.image else {}
        props |= {
            "Description": function.description,
            "Role": get_att(function.role.key, "Arn"),
            # JSON: Lambda writes each of the runtime's records (runlog.py) as one JSON object.
            "LoggingConfig": {
                "LogFormat": "JSON",
                "ApplicationLogLevel": runlog.LAMBDA_LEVELS[self.app.log_level],
                "SystemLogLevel": "INFO",
                "LogGroup": ref(function.log_group.key),
            },
            "Environment": {"Variables": self.values(function.environment)},
        }
        if function.layers:
            props["Layers"] = [ref(layer.key) for layer in function.layers]
        if function.memory is not None:
            props["MemorySize"] = function.memory
        if function.timeout is not None:
            props["Timeout"] = function.timeout
        # Not in Globals: SAM appends a function's list to the Globals list instead of replacing it.
        props["Architectures"] = [function.architecture]
        resource: dict[str, Json] = {"Type": "AWS::Serverless::Function"}
        resource["Metadata"] = owned_metadata("AWS::Serverless::Function")
        if function.image is not None:
            resource["Metadata"].update(function.image.metadata(self.app.runtime))
            if self.ignored_globals:  # merge.py keeps it equal to the zip-only keys Globals really has
                resource["IgnoreGlobals"] = list(self.ignored_globals)
        resource["Properties"] = props
        return {function.key: resource}

    @resource.register
    def _repository(self, repository: model.ImageRepository) -> dict[str, Json]:
        return {repository.key: cfn.repository_resource(repository)}

    @resource.register
    def _instance_profile(self, profile: model.InstanceProfile) -> dict[str, Json]:
        return {profile.key: cfn.instance_profile_resource(profile)}

    @resource.register
    def _compute_environment(self, environment: model.ComputeEnvironment) -> dict[str, Json]:
        return {environment.key: cfn.compute_environment_resource(environment, self.values)}

    @resource.register
    def _job_queue(self, queue: model.JobQueue) -> dict[str, Json]:
        return {queue.key: cfn.job_queue_resource(queue)}

    @resource.register
    def _job_definition(self, job: model.JobDefinition) -> dict[str, Json]:
        return {job.key: cfn.job_definition_resource(job, self.values)}

    @resource.register
    def _state_machine(self, machine: model.StateMachine) -> dict[str, Json]:
        # With Tracing enabled SAM itself attaches AWSXrayWriteOnlyAccess to this role.
        props: dict[str, Json] = {
            "Name": sub("${AWS::StackName}-" + machine.flow),
            "Type": machine.type,
            "DefinitionUri": machine.definition,
            "DefinitionSubstitutions": self.values(machine.substitutions),
            "Logging": {
                "Level": "ERROR",
                "IncludeExecutionData": False,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": get_att(machine.log_group.key, "Arn")}}],
            },
            "Tracing": {"Enabled": machine.tracing},
            "Policies": [self.values.policy(machine.statements)],
        }
        if machine.schedule is not None:
            props["Events"] = {
                "Schedule": {
                    "Type": "Schedule",
                    "Properties": {
                        "Schedule": machine.schedule.expression,
                        "Input": machine.schedule.input,
                        "Description": machine.schedule.description,
                    },
                }
            }
        return {machine.key: {"Type": "AWS::Serverless::StateMachine", "Metadata": owned_marker(), "Properties": props}}


def owned_ids(template: TemplateModel) -> dict[str, list[str]]:
    """Logical IDs per section, recorded in the template so a later run can remove stale ones."""
    return {
        "Parameters": list(template.parameters),
        "Conditions": list(template.conditions),
        "Resources": list(template.resources),
        "Outputs": list(template.outputs),
    }
