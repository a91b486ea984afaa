"""The deployment model (compile/model.py) as a serverless.yml: the Serverless Framework v3 (osls)
with the serverless-step-functions plugin.

One method per model resource class maps it to the framework's syntax; the policy is the model's.
Where the framework has its own way it is used: a step's function is an entry of `functions:`
(logical ID `<Key>LambdaFunction`, its log group the framework's `<Key>LogGroup`, so `serverless
logs -f` finds it), layers are `layers:` entries, a flow is a `stepFunctions.stateMachines` entry
whose definition is the very `statemachine/<flow>.asl.json` the SAM target uses (`${file(...)}`),
its `${...}` variables filled by CloudFormation's DefinitionSubstitutions (a
`resources.extensions` of the plugin's state machine). Roles, the bucket and the state machines' log
groups are plain CloudFormation under `resources:`, as in the SAM template.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from lokki_sam import __version__, names, runlog
from lokki_sam.compile import cfn, images, layers, model
from lokki_sam.compile.images import ImageSet
from lokki_sam.compile.layers import DependencySet
from lokki_sam.errors import LokkiError

Json = Any

STEP_FUNCTIONS_PLUGIN = "serverless-step-functions"
LOCALSTACK_PLUGIN = "serverless-localstack"  # deploys to a local cloud for `--stage local` only
# The versions `generate` pins in package.json (measured: `osls package` offline, docs/serverless.md).
NPM_PINS = {"osls": "3.77.1", STEP_FUNCTIONS_PLUGIN: "3.31.2", LOCALSTACK_PLUGIN: "1.4.0"}
LOCAL_STAGE = "local"
# The CloudFormation stack the framework deploys to, as a serverless.yml variable (a plugin's
# state machine name must be a string: `${AWS::StackName}` cannot be used there).
STACK_NAME = "${self:provider.stackName, '${self:service}-${sls:stage}'}"
STACK_PSEUDO = "${AWS::StackName}"
RUNTIME_LAYER_NAME = "LokkiSamRuntime"
LAYER_CONTENT = "python/**"  # what a layer folder holds for Lambda (its requirements.txt stays out)

# What lokki-sam owns inside each entry it generates (set when generated, removed when not); every
# other key of an entry (a function's events, vpc, tags, reservedConcurrency ...) is the user's.
FUNCTION_KEYS = (
    "handler",
    "runtime",
    "image",
    "description",
    "role",
    "architecture",
    "memorySize",
    "timeout",
    "tracing",
    "versionFunction",
    "logRetentionInDays",
    "logs",
    "layers",  # only the entries that refer to lokki-sam's layers: a user's own layers are kept
    "environment",
)
LAYER_KEYS = ("path", "name", "description", "compatibleRuntimes", "compatibleArchitectures", "retain", "package")
STATE_MACHINE_KEYS = (
    "id",
    "name",
    "type",
    "role",
    "definition",
    "loggingConfig",
    "tracingConfig",
    "events",  # only its `schedule` entry: the user's other events are kept
)
IMAGE_KEYS = ("path", "file", "platform")
SHARED_LISTS = ("layers", "events")
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


@dataclass(frozen=True)
class ServerlessConfig:
    """What lokki-sam owns in serverless.yml, by section; each section's keys in rendering order."""

    functions: dict[str, Json]
    layers: dict[str, Json]
    state_machines: dict[str, Json]
    images: dict[str, Json]  # provider.ecr.images
    parameters: dict[str, Json]  # resources.Parameters ...
    conditions: dict[str, Json]
    resources: dict[str, Json]
    outputs: dict[str, Json]
    extensions: dict[str, Json]  # resources.extensions: properties added to the plugin's resources
    patterns: list[str]  # package.patterns: what the functions' zip holds
    # layers/deps-<key> folder -> what the generated build plugin installs there (pip)
    pip_layers: dict[str, Json]
    flows: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    dependencies: Mapping[tuple[str, str], DependencySet] = field(default_factory=dict)
    images_by_step: Mapping[tuple[str, str], ImageSet] = field(default_factory=dict)
    runtime: str = ""
    description: str = ""


def render(app: model.App) -> ServerlessConfig:
    return ServerlessRenderer(app).config()


def layer_name(resource: model.RuntimeLayer | model.DependencyLayer) -> str:
    """The key under `layers:`; the framework names its logical ID `<key>LambdaLayer`."""
    return RUNTIME_LAYER_NAME if isinstance(resource, model.RuntimeLayer) else resource.key.removesuffix("Layer")


def image_name(image: ImageSet) -> str:
    return f"lokki-{image.key}"  # provider.ecr.images keys: ^[a-z][a-z0-9-_]{1,31}$


def zip_module(code_uri: str, module: str) -> str:
    """The flow module as the function imports it: the framework zips the service folder, so the
    code folder is part of the dotted name (`src/birds.py` is `src.birds`)."""
    parts = [p for p in PurePosixPath(code_uri.replace("\\", "/")).parts if p != "."]
    bad = [p for p in parts if not p.isidentifier()]
    if bad or ".." in parts:
        raise LokkiError(
            f"the code folder {code_uri!r} is not importable as a Python package path",
            where="config 'code_uri' / --code-uri",
            hint="the Serverless Framework zips the service folder, so the flows are imported through their "
            "folder: keep it below serverless.yml, named with Python identifiers (e.g. src)",
        )
    return ".".join([*parts, module])


def package_patterns(code_uri: str) -> list[str]:
    """The functions' zip holds the code folder only, as SAM's CodeUri does (layers are zipped apart)."""
    code = PurePosixPath(code_uri.replace("\\", "/")).as_posix()
    if code in (".", ""):
        return ["!images/**", "!statemachine/**", "!events/**", "!.venv/**", "!**/__pycache__/**"]
    return ["!**", f"{code}/**", "!**/__pycache__/**"]


def parameter_value(parameter: model.Parameter) -> Json:
    """A template parameter's value: `serverless deploy` passes none to its stack, so it is the
    default lokki.toml gives (a list parameter's items)."""
    if parameter.default is None:
        setting = {
            names.BATCH_SUBNETS_PARAMETER: "[batch] subnets",
            names.BATCH_SECURITY_GROUPS_PARAMETER: "[batch] security_groups",
        }.get(parameter.key, parameter.key)
        raise LokkiError(
            f"the Serverless target needs {setting} in lokki.toml: `serverless deploy` passes no "
            f"CloudFormation parameters, so serverless.yml holds the value ({parameter.description})",
            where=f"lokki.toml {setting}",
            hint=f'set it, e.g. {setting.split()[-1]} = ["..."] under [batch], or name an existing queue: '
            "[batch] job_queue",
        )
    return list(parameter.default) if parameter.type.startswith("List<") else ",".join(parameter.default)


class ServerlessValues(cfn.Intrinsics):
    """CloudFormation, except what the framework knows itself, written as it: the stack name as
    its variable, the bucket as lokki.toml chose it (an existing one by name, else the stack's).
    `serverless invoke local` resolves only literals and Ref in a function's environment."""

    def __init__(self, logical_id: Callable[[model.Resource | model.Parameter], str], existing_bucket: str) -> None:
        super().__init__(logical_id)
        self.existing_bucket = existing_bucket

    def bucket_name(self) -> Json:
        return self.existing_bucket or cfn.ref(names.BUCKET_ID)

    def __call__(self, value: model.Value) -> Json:
        if isinstance(value, model.Ref) and isinstance(value.resource, model.Parameter):
            return parameter_value(value.resource)
        return super().__call__(value)

    def text(self, value: model.Sub) -> Json:
        stack_only = value.text.replace(STACK_PSEUDO, "")
        if not value.variables and "${" not in stack_only:
            return value.text.replace(STACK_PSEUDO, STACK_NAME)
        return super().text(value)


class ServerlessRenderer:
    """Maps each model resource to serverless.yml entries (functions, layers, state machines, resources)."""

    def __init__(self, app: model.App) -> None:
        self.app = app
        self.values = ServerlessValues(self.logical_id, app.bucket.existing)
        self.functions: dict[str, Json] = {}
        self.layers: dict[str, Json] = {}
        self.state_machines: dict[str, Json] = {}
        self.images: dict[str, Json] = {}
        self.resources: dict[str, Json] = {}
        self.extensions: dict[str, Json] = {}
        self.pip_layers: dict[str, Json] = {}

    def logical_id(self, resource: model.Resource | model.Parameter) -> str:
        """The logical ID the framework (or our `resources:`) gives `resource`."""
        if isinstance(resource, model.Function):
            return names.serverless_function_id(resource.flow, resource.step)
        if isinstance(resource, model.RuntimeLayer | model.DependencyLayer):
            return f"{layer_name(resource)}LambdaLayer"
        if isinstance(resource, model.LogGroup) and resource.step is not None and not resource.job:
            return f"{names.serverless_function_key(resource.flow, resource.step)}LogGroup"
        return resource.key

    def config(self) -> ServerlessConfig:
        app = self.app
        for resource in app.resources:
            self.resource(resource)
        outputs = {
            o.key: {"Description": o.description, "Value": self.values(o.value)}
            for o in app.outputs
            # the plugin writes each state machine's ARN output itself, under this same key
            if not (isinstance(o.value, model.Ref) and isinstance(o.value.resource, model.StateMachine))
        }
        return ServerlessConfig(
            functions=self.functions,
            layers=self.layers,
            state_machines=self.state_machines,
            images=self.images,
            parameters={},  # the bucket is chosen in lokki.toml: `serverless deploy` sets no parameters
            conditions={},
            resources=self.resources,
            outputs=outputs,
            extensions=self.extensions,
            patterns=package_patterns(app.code_uri),
            pip_layers=self.pip_layers,
            flows=app.flows,
            sources=dict(app.sources),
            dependencies=app.dependencies,
            images_by_step=app.images,
            runtime=app.runtime,
            description=app.description,
        )

    @functools.singledispatchmethod
    def resource(self, resource: object) -> None:
        raise TypeError(f"the Serverless renderer has no method for {type(resource).__name__}")

    @resource.register
    def _bucket(self, bucket: model.ArtifactBucket) -> None:
        if not bucket.existing:
            self.resources.update(cfn.bucket_resources(bucket, condition=None))

    @resource.register
    def _runtime_layer(self, layer: model.RuntimeLayer) -> None:
        # `generate` copies the runtime into layers/lokki-sam/python: no build step, no package index.
        self.layers[layer_name(layer)] = self._layer(
            layers.RUNTIME_LAYER_DIR,
            "runtime",
            f"lokki-sam {__version__} runtime (copied by `lokki-sam generate`)",
            list(layers.ARCHITECTURES),  # pure Python
        )

    @resource.register
    def _dependency_layer(self, layer: model.DependencyLayer) -> None:
        deps = layer.dependencies
        shown = ", ".join(deps.requirements)
        self.layers[layer_name(layer)] = self._layer(
            deps.directory, deps.key, f"lokki-sam step dependencies: {shown}"[:256], [deps.architecture]
        )
        python = self.app.runtime.removeprefix("python")
        self.pip_layers[deps.directory] = {"python": python, "architecture": deps.architecture}

    def _layer(self, path: str, suffix: str, description: str, architectures: list[str]) -> Json:
        return {
            "path": path,
            # Named per stack: the framework's default (the key) would be one layer for every stack.
            "name": f"{STACK_NAME}-lokki-sam-{suffix}",
            "description": description,
            "compatibleRuntimes": [self.app.runtime],
            "compatibleArchitectures": architectures,
            "retain": False,
            "package": {"patterns": [LAYER_CONTENT]},
        }

    @resource.register
    def _log_group(self, group: model.LogGroup) -> None:
        if group.step is None or group.job:  # a state machine's or Batch jobs': ours, as in the SAM template
            self.resources[group.key] = cfn.log_group_resource(group)
        # A function's is the framework's own (`/aws/lambda/<function>`), with the model's retention.

    @resource.register
    def _repository(self, repository: model.ImageRepository) -> None:
        self.resources[repository.key] = cfn.repository_resource(repository)

    @resource.register
    def _instance_profile(self, profile: model.InstanceProfile) -> None:
        self.resources[profile.key] = cfn.instance_profile_resource(profile)

    @resource.register
    def _compute_environment(self, environment: model.ComputeEnvironment) -> None:
        self.resources[environment.key] = cfn.compute_environment_resource(environment, self.values)

    @resource.register
    def _job_queue(self, queue: model.JobQueue) -> None:
        self.resources[queue.key] = cfn.job_queue_resource(queue)

    @resource.register
    def _job_definition(self, job: model.JobDefinition) -> None:
        self.resources[job.key] = cfn.job_definition_resource(job, self.values)

    @resource.register
    def _role(self, role: model.Role) -> None:
        self.resources[role.key] = cfn.role_resource(role, self.values)

    @resource.register
    def _function(self, function: model.Function) -> None:
        app = self.app
        entry: dict[str, Json] = {}
        environment = dict(function.environment)
        if function.image is None:
            entry |= {"handler": names.HANDLER, "runtime": app.runtime}
            environment[names.ENV_MODULE] = zip_module(app.code_uri, function.module)
        else:
            name = image_name(function.image)
            entry["image"] = {"name": name}
            self.images[name] = {
                "path": images.DOCKER_CONTEXT,
                "file": function.image.dockerfile,
                "platform": PLATFORMS[function.image.architecture],
            }
        entry |= {
            "description": function.description,
            "role": function.role.key,  # the framework reads a bare name as the logical ID of a role
            "architecture": function.architecture,
            "memorySize": function.memory or app.memory,
            "timeout": function.timeout or app.timeout,
        }
        if app.tracing:
            entry["tracing"] = "Active"
        entry |= {
            "versionFunction": False,  # Step Functions invokes $LATEST: no versions pile up
            "logRetentionInDays": function.log_group.retention_days,
            # JSON: Lambda writes each of the runtime's records (runlog.py) as one JSON object.
            "logs": {
                "logFormat": "JSON",
                "applicationLogLevel": runlog.LAMBDA_LEVELS[app.log_level],
                "systemLogLevel": "INFO",
            },
        }
        if function.image is None:
            own: list[model.RuntimeLayer | model.DependencyLayer] = [*function.layers]
            if app.runtime_layer is not None:
                own.insert(0, app.runtime_layer)
            entry["layers"] = [cfn.ref(self.logical_id(layer)) for layer in own]
        entry["environment"] = self.values(environment)
        self.functions[names.serverless_function_key(function.flow, function.step)] = entry

    @resource.register
    def _state_machine(self, machine: model.StateMachine) -> None:
        statements = machine.statements
        if machine.tracing:  # SAM attaches AWSXrayWriteOnlyAccess to its role; here the role is ours
            statements = (*statements, model.tracing_statement())
        role = model.Role(
            f"{machine.key}Role",
            f"lokki-sam flow {machine.flow}: its state machine's functions, map runs and logs",
            "states.amazonaws.com",
            statements,
            policy_name="lokki-sam-state-machine",
        )
        self.resources[role.key] = cfn.role_resource(role, self.values)
        entry: dict[str, Json] = {
            "id": machine.key,  # the logical ID; its ARN output is then `<key>Arn` (names.state_machine_arn_output)
            "name": f"{STACK_NAME}-{machine.flow}",
            "type": machine.type,
            "role": cfn.get_att(role.key, "Arn"),
            "definition": "${file(" + machine.definition + ")}",
            "loggingConfig": {
                "level": "ERROR",
                "includeExecutionData": False,
                "destinations": [cfn.get_att(machine.log_group.key, "Arn")],
            },
            "tracingConfig": {"enabled": machine.tracing},
        }
        if machine.schedule is not None:
            entry["events"] = [
                {
                    "schedule": {
                        "rate": machine.schedule.expression,
                        "enabled": True,
                        "input": json.loads(machine.schedule.input),  # an object: the plugin writes it as JSON
                        "description": machine.schedule.description,
                    }
                }
            ]
        self.state_machines[machine.flow] = entry
        self.extensions[machine.key] = {"Properties": {"DefinitionSubstitutions": self.values(machine.substitutions)}}
