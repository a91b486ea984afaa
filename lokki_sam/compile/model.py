"""The target-neutral deployment model: what a deployment of the flows holds, built once from the graphs.

`build(graphs, settings)` decides every policy (which functions, with which settings and environment,
which IAM statements, layers, images, log groups, schedules, state machines, outputs, the bucket);
the renderers (`compile/sam.py`, `compile/serverless.py`) only map the model to their syntax and
never read a flow graph. Resources are plain frozen dataclasses that refer to each other by object
(`Arn(function)`), never by a logical ID: each target names them its own way (SAM
`BirdsGetBirdsFunction`, the Serverless Framework `BirdsGetBirdsLambdaFunction`).

A new kind of resource is one class here, placed in `App.resources` where it belongs, plus one
method per renderer (their dispatch refuses a class they do not know).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from lokki_sam import __version__, layout, names, runlog
from lokki_sam.batch.sizing import JobSize
from lokki_sam.compile import asl, images, layers
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph

# Lambda's Python runtimes, oldest first (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
LAMBDA_PYTHONS = ("python3.10", "python3.11", "python3.12", "python3.13")
MAX_FLOW_NAME = 50  # leaves room for a 29-character stack name in the 80-character state machine name
DESCRIPTION_PREFIX = "lokki-sam flows:"
BUCKET_POLICY_ID = f"{names.BUCKET_ID}Policy"  # the bucket's TLS-only policy

# Statements whose Resource must be "*", with the reason written next to it in the template.
WILDCARD_REASONS = {
    "DeliverLogs": "AWS requires '*': the log-delivery APIs take no resource (Step Functions docs, cw-logs)",
    "Tracing": "AWS requires '*': X-Ray trace and sampling APIs have no resource-level permissions",
    "DescribeJobs": "AWS requires '*': batch:DescribeJobs has no resource-level permissions",
    "RegistryLogin": "AWS requires '*': ecr:GetAuthorizationToken has no resource-level permissions",
}

_LOGICAL_ID_RE = re.compile(r"^[A-Za-z0-9]{1,255}$")
# Logical IDs the targets derive from ours (SAM: <Id>Role, <Id>Policy; the Serverless Framework:
# <Key>LambdaFunction, <Key>LogGroup, <Name>LambdaLayer): names that collide after sanitizing collide there too.
DERIVED_SUFFIXES = ("Role", "Policy")


def config_defaults() -> dict[str, Any]:
    """Every config key's default (what a project without lokki.toml has)."""
    from lokki_sam.config import SCHEMA

    return {name: key.default for name, key in SCHEMA.items()}


@dataclass(frozen=True)
class Settings:
    """Deployment-wide settings (config keys and `generate` options)."""

    code_uri: str = "src"
    runtime: str | None = None
    architecture: str = "arm64"
    package: str = images.ZIP  # config `package`: how steps without their own (or their flow's) are packaged
    memory: int = 512
    timeout: int = 300
    artifact_expiry_days: int = 30
    log_retention_days: int = 30
    tracing: bool = False
    log_level: str = "INFO"  # the runtime's (runlog.LEVELS)
    # The existing bucket for run artifacts (config artifact_bucket); "" creates one in the stack.
    artifact_bucket: str = ""
    # flow name -> dotted module importable from code_uri (defaults to graph.module)
    modules: Mapping[str, str] = field(default_factory=dict)
    # flow name -> the FLOW_REF it came from, relative to the generated file (recorded in it)
    sources: Mapping[str, str] = field(default_factory=dict)
    # The config's values: `[batch]` (batch_*) sizes, places and networks the Batch steps' jobs.
    batch: Mapping[str, Any] = field(default_factory=config_defaults)
    # The generated file's folder (the Docker context) and name: Batch images are tagged by content.
    root: Path | None = None
    template: str = "template.yaml"


def default_runtime(version: tuple[int, int] | None = None) -> str:
    """The generator's Python if Lambda supports it, else the nearest supported one."""
    major, minor = version or sys.version_info[:2]
    wanted = f"python{major}.{minor}"
    if wanted in LAMBDA_PYTHONS:
        return wanted
    versions = [int(r.split(".")[1]) for r in LAMBDA_PYTHONS]
    nearest = min(versions, key=lambda v: (abs(v - minor), -v))
    return f"python3.{nearest}"


def check_runtime(runtime: str) -> str:
    if runtime not in LAMBDA_PYTHONS:
        raise LokkiError(
            f"runtime {runtime!r} is not a Lambda Python runtime lokki-sam supports",
            where="config 'runtime'",
            hint=f"use one of {', '.join(LAMBDA_PYTHONS)}",
        )
    return runtime


# ------------------------------------------------------------------------------------ values
# Property values are JSON whose leaves may be these; each renderer turns them into its intrinsics.


@dataclass(frozen=True)
class Ref:
    """What CloudFormation's Ref gives for `resource` (a log group's name, a state machine's ARN, ...),
    or a template parameter's value."""

    resource: Resource | Parameter


@dataclass(frozen=True)
class Arn:
    """The ARN of `resource`, followed by `suffix` (`:*`: every version of a function)."""

    resource: Resource
    suffix: str = ""


@dataclass(frozen=True)
class Sub:
    """Text with `${AWS::StackName}`-style pseudo parameters and `${name}` for each of `variables`."""

    text: str
    variables: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True)
class BucketName:
    """The artifact bucket's name: the stack's own bucket, or the existing one it was given."""


Value: TypeAlias = Any  # JSON, with Ref / Arn / Sub / BucketName leaves


def s3_arn(suffix: str = "") -> Sub:
    return Sub("arn:${AWS::Partition}:s3:::${Bucket}" + suffix, (("Bucket", BucketName()),))


def state_machine_arn(flow: str, kind: str = "stateMachine", suffix: str = "") -> Sub:
    # By name: the role can then grant the Distributed Map its rights on its own state machine and
    # executions without referring to the state machine (a cycle).
    return Sub(
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:" + f"{kind}:${{AWS::StackName}}-{flow}{suffix}"
    )


# ---------------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    """An IAM policy statement, its keys in the order they are written. `reason`: why it needs a
    wildcard Resource (written next to it); only statements built with one get a comment."""

    document: Mapping[str, Value]
    reason: str | None = None

    @property
    def sid(self) -> str | None:
        sid = self.document.get("Sid")
        return str(sid) if sid is not None else None

    @property
    def actions(self) -> tuple[str, ...]:
        action = self.document.get("Action", ())
        return (action,) if isinstance(action, str) else tuple(action)

    @property
    def resources(self) -> tuple[Value, ...]:
        resource = self.document.get("Resource", ())
        return tuple(resource) if isinstance(resource, list | tuple) else (resource,)


def allow(sid: str, action: str | list[str], resource: Value, condition: Value = None) -> Statement:
    document: dict[str, Value] = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    if condition is not None:
        document["Condition"] = condition
    return Statement(document, WILDCARD_REASONS.get(sid) if resource == "*" else None)


def user_statement(permission: Mapping[str, Any]) -> Statement:
    """A step's own permission as a statement; a wildcard it declared comes with its author's reason."""
    document = {"Effect": "Allow", **{k: v for k, v in permission.items() if k != names.WILDCARD_REASON_KEY}}
    reason = permission.get(names.WILDCARD_REASON_KEY)
    return Statement(document, f"wildcard requested by the step's author: {reason}" if reason else None)


def tracing_statement() -> Statement:
    actions = ["xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    return allow("Tracing", actions, "*")


# ----------------------------------------------------------------------------------- resources


@dataclass(frozen=True, eq=False)
class ArtifactBucket:
    """The bucket of run artifacts (private, encrypted, TLS only, expiring under `lokki/`), created
    by the stack unless an existing one is named (`existing`: the default the user can override)."""

    existing: str
    expiry_days: int
    key: str = names.BUCKET_ID


@dataclass(frozen=True, eq=False)
class RuntimeLayer:
    """lokki-sam's runtime, which every zip function carries."""

    runtime: str
    key: str = layers.RUNTIME_LAYER_ID


@dataclass(frozen=True, eq=False)
class DependencyLayer:
    """The requirements of the steps that declare the same set (and architecture)."""

    dependencies: layers.DependencySet
    runtime: str

    @property
    def key(self) -> str:
        return self.dependencies.logical_id


@dataclass(frozen=True, eq=False)
class LogGroup:
    """A log group of a step's function (`step` set), of a Batch step's jobs (`job`), or of a flow's
    state machine; each target names it (a function's may be its framework's own)."""

    key: str
    flow: str
    step: str | None
    retention_days: int
    job: bool = False


@dataclass(frozen=True, eq=False)
class Role:
    """An IAM role that `service` assumes, with one inline policy of `statements` (none: no policy)
    and the AWS managed policies `managed_policies`."""

    key: str
    description: str
    service: str
    statements: tuple[Statement, ...]
    policy_name: str = "lokki-sam-step"
    managed_policies: tuple[Value, ...] = ()


@dataclass(frozen=True, eq=False)
class Function:
    """One Lambda function per (flow, step)."""

    key: str
    flow: str
    step: str
    description: str
    module: str  # the flow module, importable from code_uri
    environment: Mapping[str, Value]  # the step's own variables, then lokki-sam's
    role: Role
    log_group: LogGroup
    architecture: str
    layers: tuple[DependencyLayer, ...] = ()  # its own dependency layer (every zip function also has the runtime's)
    image: images.ImageSet | None = None  # a container-image function
    memory: int | None = None  # None: the app default
    timeout: int | None = None


@dataclass(frozen=True)
class Schedule:
    expression: str
    description: str
    input: str = "{}"  # no values: the runtime applies the defaults from the flow's code


@dataclass(frozen=True, eq=False)
class StateMachine:
    """A flow's state machine, named `<stack>-<flow>`, with the definition `asl.render` writes."""

    key: str
    flow: str
    definition: str  # the definition file, relative to the generated file
    substitutions: Mapping[str, Value]  # exactly the `${...}` variables the definition uses
    log_group: LogGroup
    statements: tuple[Statement, ...]
    functions: tuple[Function, ...]
    tracing: bool
    schedule: Schedule | None = None
    type: str = "STANDARD"
    jobs: tuple[JobDefinition, ...] = ()


@dataclass(frozen=True, eq=False)
class Parameter:
    """A template parameter (`default` None: required at deploy). The Serverless Framework passes no
    parameters to its stack, so that target writes the default in the parameter's place."""

    key: str
    type: str
    description: str
    default: tuple[str, ...] | None = None  # a list parameter's items


@dataclass(frozen=True, eq=False)
class ImageRepository:
    """The stack's ECR repository of its Batch images (`lokki-sam push` pushes them there)."""

    key: str
    keep_images: int  # the newest images kept; older ones expire


@dataclass(frozen=True, eq=False)
class InstanceProfile:
    """The instance profile of an EC2 compute environment's instances (their ECS agent's role)."""

    key: str
    role: Role


@dataclass(frozen=True, eq=False)
class ComputeEnvironment:
    """A managed AWS Batch compute environment of one platform (`fargate` or `ec2`)."""

    key: str
    platform: str
    spot: bool
    max_vcpus: int
    subnets: Value
    security_groups: Value
    instance_types: tuple[str, ...] = ()  # EC2 only
    instance_profile: InstanceProfile | None = None  # EC2 only


@dataclass(frozen=True, eq=False)
class JobQueue:
    key: str
    environment: ComputeEnvironment


@dataclass(frozen=True, eq=False)
class JobDefinition:
    """One AWS Batch job definition per (flow, step) of a Batch step: what its Task submits."""

    key: str
    flow: str
    step: str
    image: images.ImageSet
    image_tag: str  # `<key>-<digest>` (compile/batch_images.py)
    repository: ImageRepository
    size: JobSize
    architecture: str
    environment: Mapping[str, Value]  # the step's own variables, then lokki-sam's
    role: Role  # the job's: its code's AWS calls
    execution_role: Role  # the platform's: pulling the image, writing the log
    log_group: LogGroup
    queue: Value  # the ARN of the queue its jobs go to
    public_ip: bool  # Fargate: a public IP (subnets without NAT gateway or endpoints)

    @property
    def image_uri(self) -> Value:
        """`<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>`, as ECR names the image."""
        text = "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${Repository}:" + self.image_tag
        return Sub(text, (("Repository", Ref(self.repository)),))


Resource: TypeAlias = (
    ArtifactBucket
    | RuntimeLayer
    | DependencyLayer
    | LogGroup
    | Role
    | Function
    | StateMachine
    | ImageRepository
    | InstanceProfile
    | ComputeEnvironment
    | JobQueue
    | JobDefinition
)


@dataclass(frozen=True)
class Output:
    key: str
    description: str
    value: Value


@dataclass(frozen=True)
class App:
    """Everything a deployment of `flows` holds; `resources` in the order the files show them."""

    flows: tuple[str, ...]
    sources: Mapping[str, str]  # flow -> the FLOW_REF it came from
    description: str
    runtime: str
    code_uri: str
    memory: int
    timeout: int
    tracing: bool
    log_level: str
    bucket: ArtifactBucket
    runtime_layer: RuntimeLayer | None  # None when every function is an image
    resources: tuple[Resource, ...]
    outputs: tuple[Output, ...]
    # (flow, step) -> the layer of the step's own dependencies / the image of an image or Batch step
    dependencies: Mapping[tuple[str, str], layers.DependencySet] = field(default_factory=dict)
    images: Mapping[tuple[str, str], images.ImageSet] = field(default_factory=dict)
    parameters: tuple[Parameter, ...] = ()

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [r for r in self.resources if isinstance(r, kind)]

    @property
    def functions(self) -> list[Function]:
        return self.of_type(Function)

    @property
    def state_machines(self) -> list[StateMachine]:
        return self.of_type(StateMachine)

    @property
    def jobs(self) -> list[JobDefinition]:
        return self.of_type(JobDefinition)


# ---------------------------------------------------------------------------------------- build


def build(graphs: Sequence[FlowGraph], settings: Settings) -> App:
    from lokki_sam.compile import batch

    if not graphs:
        raise LokkiError("no flow to generate a template for")
    check_names(graphs)
    runtime = check_runtime(settings.runtime) if settings.runtime else default_runtime()
    image_sets = images.image_sets(graphs, settings.package, settings.architecture)
    stack_batch = batch.build(graphs, settings, runtime)
    every_image = {**image_sets, **{key: job.image for key, job in stack_batch.jobs.items()}}
    for image, steps in images.steps_by_image(every_image).items():
        images.base_image(runtime, image.architecture, steps)  # refuses a runtime without a base image
    if every_image:
        images.context_path(settings.code_uri)  # the Docker context must hold the code
    dependencies = {
        key: deps
        for key, deps in layers.dependency_sets(graphs, settings.architecture).items()
        if key not in every_image  # an image installs its requirements itself
    }
    dependency_layers = {deps: DependencyLayer(deps, runtime) for deps in dependencies.values()}
    lambda_steps = [(g.name, s.name) for g in graphs for s in g.steps if not s.options.on_batch]
    has_zip = any(key not in image_sets for key in lambda_steps)
    bucket = ArtifactBucket(settings.artifact_bucket, settings.artifact_expiry_days)
    runtime_layer = RuntimeLayer(runtime) if has_zip else None
    resources: list[Resource] = [bucket]
    if runtime_layer is not None:
        resources.append(runtime_layer)
    resources.extend(dependency_layers.values())
    resources.extend(stack_batch.resources)
    outputs: list[Output] = []
    for graph in graphs:
        functions, jobs = [], []
        for step in graph.steps:
            job = stack_batch.jobs.get((graph.name, step.name))
            if job is not None:
                jobs.append(job)
                resources += [job.log_group, job.role, job]
                continue
            function = step_function(graph, step, settings, dependency_layers, dependencies, image_sets)
            functions.append(function)
            resources += [function.log_group, function.role, function]
        machine = state_machine(graph, settings, tuple(functions), tuple(jobs))
        resources += [machine.log_group, machine]
        described = f"ARN of the state machine of flow '{graph.name}'"
        outputs.append(Output(names.state_machine_arn_output(graph.name), described, Ref(machine)))
    outputs.append(Output(names.BUCKET_OUTPUT, "Bucket holding run artifacts", BucketName()))
    if stack_batch.repository is not None:
        described = "ECR repository of the Batch steps' images (`lokki-sam push` pushes them there)"
        outputs.append(Output(names.BATCH_REPOSITORY_OUTPUT, described, Ref(stack_batch.repository)))
    return App(
        flows=tuple(g.name for g in graphs),
        sources=dict(settings.sources),
        description=f"{DESCRIPTION_PREFIX} {', '.join(g.name for g in graphs)}",
        runtime=runtime,
        code_uri=settings.code_uri,
        memory=settings.memory,
        timeout=settings.timeout,
        tracing=settings.tracing,
        log_level=settings.log_level,
        bucket=bucket,
        runtime_layer=runtime_layer,
        resources=tuple(resources),
        outputs=tuple(outputs),
        dependencies=dependencies,
        images=every_image,
        parameters=stack_batch.parameters,
    )


def step_function(
    graph: FlowGraph,
    step: Any,
    settings: Settings,
    dependency_layers: Mapping[layers.DependencySet, DependencyLayer],
    dependencies: Mapping[tuple[str, str], layers.DependencySet],
    image_sets: Mapping[tuple[str, str], images.ImageSet],
) -> Function:
    opts = step.options
    fid = names.function_id(graph.name, step.name)
    log_group = LogGroup(f"{fid}LogGroup", graph.name, step.name, settings.log_retention_days)
    statements = [
        # The function's own log group only (a framework's default role would grant logs actions on
        # every log group).
        allow("OwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], Arn(log_group)),
        *artifact_statements(graph, step),
    ]
    if settings.tracing:
        statements.append(tracing_statement())
    statements.extend(user_statement(p) for p in opts.permissions)
    role = Role(
        f"{fid}Role",
        f"lokki-sam step {graph.name}.{step.name}: its logs and its flow's artifacts",
        "lambda.amazonaws.com",
        tuple(statements),
    )
    deps = dependencies.get((graph.name, step.name))
    return Function(
        key=fid,
        flow=graph.name,
        step=step.name,
        description=f"lokki-sam step {graph.name}.{step.name}",
        module=settings.modules.get(graph.name, graph.module),
        environment=step_environment(graph, step, settings),
        role=role,
        log_group=log_group,
        architecture=opts.architecture or settings.architecture,
        layers=(dependency_layers[deps],) if deps is not None else (),
        image=image_sets.get((graph.name, step.name)),
        memory=opts.memory,
        timeout=opts.timeout,
    )


def step_environment(graph: FlowGraph, step: Any, settings: Settings, *, endpoint: bool = True) -> dict[str, Value]:
    """What a step's code runs with, on Lambda or in a Batch job: its own variables, then lokki-sam's
    (`endpoint`: LOKKI_ENDPOINT_URL declared empty, for `sam local invoke` to set; a job's region,
    which Batch on EC2 does not set)."""
    environment: dict[str, Value] = dict(step.options.environment)
    environment.update(
        {
            names.ENV_MODULE: settings.modules.get(graph.name, graph.module),
            names.ENV_FLOW: graph.name,
            names.ENV_STEP: step.name,
            names.ENV_BUCKET: BucketName(),
            names.ENV_PREFIX: Sub(names.template_flow_prefix(graph.name)),
            names.ENV_VERSION: __version__,
            runlog.ENV_LOG_LEVEL: settings.log_level,  # where the platform ignores LoggingConfig
        }
    )
    if endpoint:
        environment[names.ENV_ENDPOINT_URL] = ""  # declared so that a local invoke can set it (runtime.py)
    else:
        environment["AWS_DEFAULT_REGION"] = Sub("${AWS::Region}")
    return environment


def artifact_statements(graph: FlowGraph, step: Any) -> list[Statement]:
    """A step's reach into the artifact bucket, on Lambda or in a Batch job: reads anywhere under its
    flow's prefix, writes under its own nodes' directories only, lists the prefix."""
    prefix = names.template_flow_prefix(graph.name)
    return [
        # Inputs may come from any step of the flow (this stack's prefix only) ...
        allow("ReadRunArtifacts", "s3:GetObject", s3_arn(f"/{prefix}/*")),
        # ... but the step writes only under its own nodes' directories: a buggy or compromised
        # step cannot overwrite another step's outputs (layout.node_pattern).
        allow(
            "WriteOwnArtifacts",
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            [s3_arn(f"/{prefix}/{layout.node_pattern(n.id)}") for n in graph.nodes if n.step.name == step.name],
        ),
        allow("ListRunArtifacts", "s3:ListBucket", s3_arn(), {"StringLike": {"s3:prefix": [Sub(f"{prefix}/*")]}}),
    ]


def result_writer_prefixes(graph: FlowGraph) -> list[str]:
    """Where the definition's ResultWriters write: one prefix per distributed map (Fn::Sub text)."""
    prefix = names.template_flow_prefix(graph.name)
    return sorted(names.result_writer_prefix(prefix, m.id) for m in graph.maps if m.options.mode == "distributed")


def log_group_id(flow: str) -> str:
    return f"{names.state_machine_id(flow)}LogGroup"


def schedule(graph: FlowGraph) -> Schedule | None:
    if not graph.schedule:
        return None
    required = [p.name for p in graph.params if p.required]
    if required:
        raise LokkiError(
            f"flow '{graph.name}' has a schedule but parameter(s) {', '.join(required)} have no default",
            where=f"flow '{graph.name}'",
            hint="scheduled runs use the parameters' defaults: give every parameter a default",
        )
    # No values: the runtime applies the defaults from the flow's code, so none is copied into the
    # deployment (a secret-looking default, a value JSON cannot hold, a stale copy of a changed default).
    return Schedule(graph.schedule, f"Scheduled run of flow '{graph.name}' with its default parameters")


def state_machine(
    graph: FlowGraph, settings: Settings, functions: tuple[Function, ...], jobs: tuple[JobDefinition, ...] = ()
) -> StateMachine:
    from lokki_sam.compile import batch

    flow = graph.name
    prefix = names.template_flow_prefix(flow)
    by_step = {f.step: f for f in functions}
    known: dict[str, Value] = {names.function_arn_substitution(flow, s): Arn(f) for s, f in by_step.items()}
    known.update(batch.substitutions(jobs))
    known[names.BUCKET_SUBSTITUTION] = BucketName()
    known[names.PREFIX_SUBSTITUTION] = Sub(prefix)
    statements = []
    if functions:
        statements.append(
            allow(
                "InvokeOwnFunctions",
                "lambda:InvokeFunction",
                [Arn(f) for f in functions] + [Arn(f, ":*") for f in functions],
            )
        )
    statements += batch.machine_statements(graph, jobs)
    distributed = [m for m in graph.maps if m.options.mode == "distributed"]
    if distributed:
        statements += [
            # The ItemReader reads the maps' manifests, nothing else.
            allow(
                "MapItemReader",
                "s3:GetObject",
                [s3_arn(f"/{prefix}/{p}") for m in distributed for p in layout.manifest_patterns(m.source)],
            ),
            # The ResultWriter writes (multipart) under its own prefix only: the state machine
            # can never overwrite the pickles the functions load.
            allow(
                "MapResultWriter",
                ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                [s3_arn(f"/{p}/*") for p in result_writer_prefixes(graph)],
            ),
            allow("DistributedMapStartChildren", "states:StartExecution", state_machine_arn(flow)),
            allow(
                "DistributedMapManageChildren",
                ["states:DescribeExecution", "states:StopExecution"],
                state_machine_arn(flow, "execution", "/*"),
            ),
        ]
    # https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html documents Resource "*".
    log_delivery = [
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
    ]
    statements.append(allow("DeliverLogs", log_delivery, "*"))
    return StateMachine(
        key=names.state_machine_id(flow),
        flow=flow,
        definition=f"statemachine/{flow}.asl.json",
        substitutions={name: known[name] for name in asl.substitution_names(graph)},
        log_group=LogGroup(log_group_id(flow), flow, None, settings.log_retention_days),
        statements=tuple(statements),
        functions=functions,
        tracing=settings.tracing,
        schedule=schedule(graph),
        jobs=jobs,
    )


# ---------------------------------------------------------------------------------------- names


def check_names(graphs: Sequence[FlowGraph]) -> None:
    """Refuse duplicate flows and logical IDs that collide after sanitizing (`a_b` and `aB` -> `AB`)."""
    seen_flows: set[str] = set()
    owners: dict[str, str] = {}

    def claim(logical_id: str, what: str) -> None:
        if not _LOGICAL_ID_RE.match(logical_id):
            raise LokkiError(
                f"{what} gives the logical ID {logical_id!r}, which CloudFormation does not accept",
                hint="logical IDs use letters and digits only (at most 255): rename the flow or step",
            )
        for candidate in (logical_id, *(logical_id + s for s in DERIVED_SUFFIXES)):
            if candidate in owners and owners[candidate] != what:
                raise LokkiError(
                    f"{what} and {owners[candidate]} both map to the logical ID {candidate!r}",
                    hint="rename one of them: logical IDs drop '_' and capitalize, so a_b and aB collide",
                )
            owners[candidate] = what

    for fixed in (names.BUCKET_ID, BUCKET_POLICY_ID):
        owners[fixed] = "the artifact bucket"
    for fixed in (
        names.BATCH_REPOSITORY_ID,
        names.BATCH_EXECUTION_ROLE_ID,
        names.BATCH_INSTANCE_ROLE_ID,
        names.BATCH_INSTANCE_PROFILE_ID,
        *names.COMPUTE_ENVIRONMENT_IDS.values(),
        *names.JOB_QUEUE_IDS.values(),
    ):
        owners[fixed] = "the stack's AWS Batch resources"
    for graph in graphs:
        if len(graph.name) > MAX_FLOW_NAME:
            raise LokkiError(
                f"flow name '{graph.name}' is longer than {MAX_FLOW_NAME} characters",
                hint="the state machine is named <stack>-<flow> (at most 80 characters): "
                "choose a shorter name with @flow(name=...)",
            )
        if graph.name in seen_flows:
            raise LokkiError(f"flow '{graph.name}' is given twice", hint="flow names must be unique in one template")
        seen_flows.add(graph.name)
        claim(names.state_machine_id(graph.name), f"flow '{graph.name}'")
        claim(log_group_id(graph.name), f"flow '{graph.name}'")
        for step in graph.steps:
            what = f"step '{graph.name}.{step.name}'"
            if step.options.on_batch:
                for logical_id in (
                    names.job_definition_id(graph.name, step.name),
                    names.job_role_id(graph.name, step.name),
                    names.job_log_group_id(graph.name, step.name),
                ):
                    claim(logical_id, what)
                continue
            fid = names.function_id(graph.name, step.name)
            claim(fid, what)
            claim(f"{fid}LogGroup", what)
