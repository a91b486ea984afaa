"""FlowGraph(s) -> the SAM template model: plain dicts with long-form intrinsics (`{"Ref": ...}`).

The model holds only what lokki-sam owns; `merge.py` folds it into an existing template and
writes YAML with short-form tags. Every name comes from `names.py`, so the state machine's
`${...}` substitutions, the runtime's environment and `lokki-sam invoke` agree with it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lokki_sam import __version__, layout, names, runlog
from lokki_sam.batch.template import refuse_batch_steps
from lokki_sam.compile import asl, images, layers
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph

Json = Any

# Lambda's Python runtimes, oldest first (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
LAMBDA_PYTHONS = ("python3.10", "python3.11", "python3.12", "python3.13")

DESCRIPTION_PREFIX = "lokki-sam flows:"
MARKER_KEY = "lokki-sam"  # Metadata key marking what lokki-sam owns
MARKER = "generated"
BUCKET_PARAMETER = "ExistingArtifactBucket"
CREATE_BUCKET_CONDITION = "CreateArtifactBucket"
BUCKET_POLICY_ID = "ArtifactBucketPolicy"

# SAM derives these logical IDs from ours; a user resource with such an ID would clash after the transform.
SAM_DERIVED_SUFFIXES = ("Role", "Policy")

# Statements whose Resource must be "*", with the reason written next to it in the template.
WILDCARD_REASONS = {
    "DeliverLogs": "AWS requires '*': the log-delivery APIs take no resource (Step Functions docs, cw-logs)",
    "Tracing": "AWS requires '*': X-Ray trace and sampling APIs have no resource-level permissions",
}


class Justified(dict[str, Json]):
    """An IAM statement the template shows with the reason for its wildcard (a comment next to it).

    Only statements built as Justified get a comment: a user's Sid can never borrow a reason."""

    def __init__(self, statement: Mapping[str, Json], reason: str) -> None:
        super().__init__(statement)
        self.reason = reason


def justified(statement: Mapping[str, Json]) -> Json:
    """A generated statement on "*" with the reason AWS needs it (WILDCARD_REASONS by its Sid)."""
    return Justified(statement, WILDCARD_REASONS[str(statement["Sid"])])


def user_statement(permission: Mapping[str, Json]) -> Json:
    """A step's own permission as a statement; a wildcard it declared comes with its author's reason."""
    statement = {"Effect": "Allow", **{k: v for k, v in permission.items() if k != names.WILDCARD_REASON_KEY}}
    reason = permission.get(names.WILDCARD_REASON_KEY)
    return Justified(statement, f"wildcard requested by the step's author: {reason}") if reason else statement


MAX_FLOW_NAME = 50  # leaves room for a 29-character stack name in the 80-character state machine name

# checkov findings accepted by design, each written next to its resource with the reason
# (Metadata.checkov.skip; checkov reads it, and `docs/reliability.md` lists them).
CHECKOV_SKIPS: dict[str, tuple[tuple[str, str], ...]] = {
    "AWS::Serverless::Function": (
        (
            "CKV_AWS_115",
            "Reserved concurrency would be carved out of the account's pool for every step; the map's "
            "MaxConcurrency already bounds how many invocations run at once",
        ),
        (
            "CKV_AWS_116",
            "Step Functions invokes this function synchronously and retries or fails the execution; "
            "a dead-letter queue only applies to asynchronous invocations",
        ),
        (
            "CKV_AWS_117",
            "The function reaches only S3 and its own log group; a VPC would add NAT or endpoints. "
            "Add VpcConfig under Globals if your data must stay in a VPC",
        ),
        (
            "CKV_AWS_173",
            "The environment holds names only (module, flow, step, bucket, prefix) and secret references, "
            "never secret values (lokki-sam refuses literal secrets); Lambda encrypts it at rest by default",
        ),
    ),
    "AWS::Logs::LogGroup": (
        (
            "CKV_AWS_158",
            "CloudWatch Logs encrypts log data at rest by default; a customer-managed KMS key is opt-in "
            "(add KmsKeyId and a key policy for logs)",
        ),
    ),
    "AWS::S3::Bucket": (
        (
            "CKV_AWS_18",
            "Server access logs need a second bucket; use CloudTrail S3 data events to audit artifact access",
        ),
        (
            "CKV_AWS_21",
            "Artifacts are rewritten only under keys derived from (run, step, item) and expire by the "
            "lifecycle rule; versioning would keep every retried write beyond that expiry",
        ),
    ),
}

_LOGICAL_ID_RE = re.compile(r"^[A-Za-z0-9]{1,255}$")


@dataclass(frozen=True)
class Settings:
    """Template-wide settings (config keys and `generate` options)."""

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
    # Default of the ExistingArtifactBucket parameter (config artifact_bucket); "" creates a bucket.
    artifact_bucket: str = ""
    # flow name -> dotted module importable from code_uri (defaults to graph.module)
    modules: Mapping[str, str] = field(default_factory=dict)
    # flow name -> the FLOW_REF it came from, relative to the template (recorded in the template)
    sources: Mapping[str, str] = field(default_factory=dict)


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


# ------------------------------------------------------------------------------ intrinsics


def ref(name: str) -> Json:
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str, variables: Mapping[str, Json] | None = None) -> Json:
    return {"Fn::Sub": [text, dict(variables)] if variables else text}


def bucket_name() -> Json:
    """The artifact bucket: the stack's own, or the existing one named by the parameter."""
    return {"Fn::If": [CREATE_BUCKET_CONDITION, ref(names.BUCKET_ID), ref(BUCKET_PARAMETER)]}


def s3_arn(suffix: str = "") -> Json:
    return sub("arn:${AWS::Partition}:s3:::${Bucket}" + suffix, {"Bucket": bucket_name()})


def state_machine_name(flow: str) -> Json:
    # Named explicitly so the role can grant the Distributed Map rights on its own state
    # machine and executions by ARN, without referencing the state machine (a cycle).
    return sub("${AWS::StackName}-" + flow)


def state_machine_arn(flow: str, kind: str = "stateMachine", suffix: str = "") -> Json:
    return sub(
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:" + f"{kind}:${{AWS::StackName}}-{flow}{suffix}"
    )


# ------------------------------------------------------------------------------- the model


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


def build_model(graphs: Sequence[FlowGraph], settings: Settings) -> TemplateModel:
    if not graphs:
        raise LokkiError("no flow to generate a template for")
    check_names(graphs)
    refuse_batch_steps(graphs)  # until the Batch resources are generated (lokki_sam/batch/template.py)
    runtime = check_runtime(settings.runtime) if settings.runtime else default_runtime()
    flow_list = ", ".join(g.name for g in graphs)
    image_sets = images.image_sets(graphs, settings.package, settings.architecture)
    for image, steps in images.steps_by_image(image_sets).items():
        images.base_image(runtime, image.architecture, steps)  # refuses a runtime without a base image
    if image_sets:
        images.context_path(settings.code_uri)  # the Docker context must hold the code
    dependencies = {
        key: deps
        for key, deps in layers.dependency_sets(graphs, settings.architecture).items()
        if key not in image_sets  # an image installs its requirements itself
    }
    has_zip = any((g.name, s.name) not in image_sets for g in graphs for s in g.steps)
    resources: dict[str, Json] = {}
    resources.update(bucket_resources(settings))
    if has_zip:  # only zip functions carry the runtime layer (an image has the runtime inside)
        resources[layers.RUNTIME_LAYER_ID] = layers.runtime_layer(runtime, owned_marker())
    for deps in dependencies.values():
        resources[deps.logical_id] = layers.dependency_layer(deps, runtime, owned_marker())
    globals_function = function_globals(settings, runtime, has_zip)
    ignored = [key for key in images.ZIP_ONLY_GLOBALS if key in globals_function]
    outputs: dict[str, Json] = {}
    for graph in graphs:
        resources.update(function_resources(graph, settings, dependencies, image_sets, runtime, ignored))
        resources.update(state_machine_resources(graph, settings))
        outputs[names.state_machine_arn_output(graph.name)] = {
            "Description": f"ARN of the state machine of flow '{graph.name}'",
            "Value": ref(names.state_machine_id(graph.name)),
        }
    outputs[names.BUCKET_OUTPUT] = {"Description": "Bucket holding run artifacts", "Value": bucket_name()}
    parameters = {
        BUCKET_PARAMETER: {
            "Type": "String",
            "Default": settings.artifact_bucket,
            "AllowedPattern": "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            "Description": "Name of an existing S3 bucket for run artifacts; empty creates one in the stack",
        }
    }
    conditions = {CREATE_BUCKET_CONDITION: {"Fn::Equals": [ref(BUCKET_PARAMETER), ""]}}
    return TemplateModel(
        description=f"{DESCRIPTION_PREFIX} {flow_list}",
        parameters=parameters,
        conditions=conditions,
        globals_function=globals_function,
        resources=resources,
        outputs=outputs,
        flows=tuple(g.name for g in graphs),
        sources=dict(settings.sources),
        dependencies=dependencies,
        images=image_sets,
        runtime=runtime,
    )


def function_globals(settings: Settings, runtime: str, has_zip: bool) -> dict[str, Json]:
    """Globals.Function: what every function shares. Runtime, Handler, CodeUri and the runtime layer
    only when some function is a zip (image functions ignore them: IgnoreGlobals, images.py)."""
    out: dict[str, Json] = {}
    if has_zip:
        out.update({"Runtime": runtime, "Handler": names.HANDLER, "CodeUri": settings.code_uri})
    out.update({"MemorySize": settings.memory, "Timeout": settings.timeout})
    if has_zip:
        # Every zip function carries the lokki-sam runtime; a step's own dependencies are added per function.
        out["Layers"] = [ref(layers.RUNTIME_LAYER_ID)]
    if settings.tracing:
        out["Tracing"] = "Active"
    return out


def owned_marker() -> dict[str, str]:
    return {MARKER_KEY: MARKER}


def owned_metadata(resource_type: str) -> dict[str, Json]:
    """The ownership marker, plus the checkov findings accepted for this type and why."""
    meta: dict[str, Json] = dict(owned_marker())
    if resource_type in CHECKOV_SKIPS:
        meta["checkov"] = {"skip": [{"id": i, "comment": why} for i, why in CHECKOV_SKIPS[resource_type]]}
    return meta


# ----------------------------------------------------------------------------------- bucket

# The properties each emitter below sets: lokki-sam owns exactly these on its resources (set when
# generated, removed when no longer generated); merge.py keeps every other property of the user's.
BUCKET_PROPERTIES = (
    "BucketEncryption",
    "PublicAccessBlockConfiguration",
    "OwnershipControls",
    "LifecycleConfiguration",
)
BUCKET_POLICY_PROPERTIES = ("Bucket", "PolicyDocument")


def bucket_resources(settings: Settings) -> dict[str, Json]:
    bucket = {
        "Type": "AWS::S3::Bucket",
        "Condition": CREATE_BUCKET_CONDITION,
        # Artifacts are data: deleting the stack keeps them (the lifecycle rule still expires them).
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Metadata": owned_metadata("AWS::S3::Bucket"),
        "Properties": {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "ExpireRunArtifacts",
                        "Status": "Enabled",
                        "Prefix": "lokki/",
                        "ExpirationInDays": settings.artifact_expiry_days,
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        },
    }
    policy = {
        "Type": "AWS::S3::BucketPolicy",
        "Condition": CREATE_BUCKET_CONDITION,
        "Metadata": owned_marker(),
        "Properties": {
            "Bucket": ref(names.BUCKET_ID),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [get_att(names.BUCKET_ID, "Arn"), sub("${" + names.BUCKET_ID + ".Arn}/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }
    return {names.BUCKET_ID: bucket, BUCKET_POLICY_ID: policy}


# -------------------------------------------------------------------------------- functions

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
ROLE_PROPERTIES = ("Description", "AssumeRolePolicyDocument", "Policies")
LOG_GROUP_PROPERTIES = ("LogGroupName", "RetentionInDays")


def function_resources(
    graph: FlowGraph,
    settings: Settings,
    dependencies: Mapping[tuple[str, str], layers.DependencySet],
    image_sets: Mapping[tuple[str, str], images.ImageSet] | None = None,
    runtime: str = "",
    ignored_globals: Sequence[str] = (),
) -> dict[str, Json]:
    prefix = names.template_flow_prefix(graph.name)
    module = settings.modules.get(graph.name, graph.module)
    out: dict[str, Json] = {}
    for step in graph.steps:
        opts = step.options
        variables: dict[str, Json] = dict(opts.environment)
        variables.update(
            {
                names.ENV_MODULE: module,
                names.ENV_FLOW: graph.name,
                names.ENV_STEP: step.name,
                names.ENV_BUCKET: bucket_name(),
                names.ENV_PREFIX: sub(prefix),
                names.ENV_VERSION: __version__,
                runlog.ENV_LOG_LEVEL: settings.log_level,  # where the platform ignores LoggingConfig
                names.ENV_ENDPOINT_URL: "",  # declared so that sam local --env-vars can set it (runtime.py)
            }
        )
        fid = names.function_id(graph.name, step.name)
        statements: list[Json] = [
            {
                # The function's own log group only (SAM's default role would attach
                # AWSLambdaBasicExecutionRole: logs actions on every log group).
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": get_att(function_log_group_id(fid), "Arn"),
            },
            {
                # Inputs may come from any step of the flow (this stack's prefix only) ...
                "Sid": "ReadRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": s3_arn(f"/{prefix}/*"),
            },
            {
                # ... but the function writes only under its own nodes' directories: a buggy or
                # compromised step cannot overwrite another step's outputs (layout.node_pattern).
                "Sid": "WriteOwnArtifacts",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [
                    s3_arn(f"/{prefix}/{layout.node_pattern(node.id)}")
                    for node in graph.nodes
                    if node.step.name == step.name
                ],
            },
            {
                "Sid": "ListRunArtifacts",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": s3_arn(),
                "Condition": {"StringLike": {"s3:prefix": [sub(f"{prefix}/*")]}},
            },
        ]
        if settings.tracing:
            statements.append(tracing_statement())
        statements.extend(user_statement(p) for p in opts.permissions)
        image = (image_sets or {}).get((graph.name, step.name))
        props: dict[str, Json] = {"PackageType": "Image"} if image else {}
        props |= {
            "Description": f"lokki-sam step {graph.name}.{step.name}",
            "Role": get_att(function_role_id(fid), "Arn"),
            # JSON: Lambda writes each of the runtime's records (runlog.py) as one JSON object.
            "LoggingConfig": {
                "LogFormat": "JSON",
                "ApplicationLogLevel": runlog.LAMBDA_LEVELS[settings.log_level],
                "SystemLogLevel": "INFO",
                "LogGroup": ref(function_log_group_id(fid)),
            },
            "Environment": {"Variables": variables},
        }
        deps = dependencies.get((graph.name, step.name))
        if deps is not None:
            props["Layers"] = [ref(deps.logical_id)]
        if opts.memory is not None:
            props["MemorySize"] = opts.memory
        if opts.timeout is not None:
            props["Timeout"] = opts.timeout
        # Not in Globals: SAM appends a function's list to the Globals list instead of replacing it.
        props["Architectures"] = [opts.architecture or settings.architecture]
        out[function_log_group_id(fid)] = {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Metadata": owned_metadata("AWS::Logs::LogGroup"),
            "Properties": {
                "LogGroupName": sub(f"/aws/lambda/${{AWS::StackName}}/{graph.name}/{step.name}"),
                "RetentionInDays": settings.log_retention_days,
            },
        }
        out[function_role_id(fid)] = {
            "Type": "AWS::IAM::Role",
            "Metadata": owned_marker(),
            "Properties": {
                "Description": f"lokki-sam step {graph.name}.{step.name}: its logs and its flow's artifacts",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "lokki-sam-step",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                    }
                ],
            },
        }
        function: dict[str, Json] = {"Type": "AWS::Serverless::Function"}
        function["Metadata"] = owned_metadata("AWS::Serverless::Function")
        if image is not None:
            function["Metadata"].update(image.metadata(runtime))
            if ignored_globals:  # merge.py keeps it equal to the zip-only keys Globals really has
                function["IgnoreGlobals"] = list(ignored_globals)
        function["Properties"] = props
        out[fid] = function
    return out


def function_role_id(function_id: str) -> str:
    # The ID SAM would give the role it creates; given Role, SAM creates none, so no clash.
    return f"{function_id}Role"


def function_log_group_id(function_id: str) -> str:
    return f"{function_id}LogGroup"


def tracing_statement() -> Json:
    return justified(
        {
            "Sid": "Tracing",
            "Effect": "Allow",
            "Action": [
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:PutTelemetryRecords",
                "xray:PutTraceSegments",
            ],
            "Resource": "*",
        }
    )


# ---------------------------------------------------------------------------- state machine


def result_writer_prefixes(graph: FlowGraph) -> list[str]:
    """Where the definition's ResultWriters write: one prefix per distributed map (Fn::Sub text)."""
    prefix = names.template_flow_prefix(graph.name)
    return sorted(names.result_writer_prefix(prefix, m.id) for m in graph.maps if m.options.mode == "distributed")


def log_group_id(flow: str) -> str:
    return f"{names.state_machine_id(flow)}LogGroup"


def schedule_input(graph: FlowGraph) -> str:
    required = [p.name for p in graph.params if p.required]
    if required:
        raise LokkiError(
            f"flow '{graph.name}' has a schedule but parameter(s) {', '.join(required)} have no default",
            where=f"flow '{graph.name}'",
            hint="scheduled runs use the parameters' defaults: give every parameter a default",
        )
    # No values: the runtime applies the defaults from the flow's code, so none is copied into the
    # template (a secret-looking default, a value JSON cannot hold, a stale copy of a changed default).
    return "{}"


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


def state_machine_resources(graph: FlowGraph, settings: Settings) -> dict[str, Json]:
    flow = graph.name
    prefix = names.template_flow_prefix(flow)
    sm_id = names.state_machine_id(flow)
    function_ids = [names.function_id(flow, s.name) for s in graph.steps]
    known: dict[str, Json] = {
        names.function_arn_substitution(flow, s.name): get_att(names.function_id(flow, s.name), "Arn")
        for s in graph.steps
    }
    known[names.BUCKET_SUBSTITUTION] = bucket_name()
    known[names.PREFIX_SUBSTITUTION] = sub(prefix)
    # Exactly the variables the definition uses (asl decides), each with its value.
    substitutions = {name: known[name] for name in asl.substitution_names(graph)}
    statements: list[Json] = [
        {
            "Sid": "InvokeOwnFunctions",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": [get_att(f, "Arn") for f in function_ids] + [sub("${" + f + ".Arn}:*") for f in function_ids],
        }
    ]
    distributed = [m for m in graph.maps if m.options.mode == "distributed"]
    if distributed:
        statements += [
            {
                # The ItemReader reads the maps' manifests, nothing else.
                "Sid": "MapItemReader",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [s3_arn(f"/{prefix}/{p}") for m in distributed for p in layout.manifest_patterns(m.source)],
            },
            {
                # The ResultWriter writes (multipart) under its own prefix only: the state machine
                # can never overwrite the pickles the functions load.
                "Sid": "MapResultWriter",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                "Resource": [s3_arn(f"/{p}/*") for p in result_writer_prefixes(graph)],
            },
            {
                "Sid": "DistributedMapStartChildren",
                "Effect": "Allow",
                "Action": "states:StartExecution",
                "Resource": state_machine_arn(flow),
            },
            {
                "Sid": "DistributedMapManageChildren",
                "Effect": "Allow",
                "Action": ["states:DescribeExecution", "states:StopExecution"],
                "Resource": state_machine_arn(flow, "execution", "/*"),
            },
        ]
    statements.append(
        justified(
            {
                # https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html documents Resource "*".
                "Sid": "DeliverLogs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:DescribeLogGroups",
                    "logs:DescribeResourcePolicies",
                    "logs:GetLogDelivery",
                    "logs:ListLogDeliveries",
                    "logs:PutResourcePolicy",
                    "logs:UpdateLogDelivery",
                ],
                "Resource": "*",
            }
        )
    )
    # With Tracing enabled SAM itself attaches AWSXrayWriteOnlyAccess to this role.
    props: dict[str, Json] = {
        "Name": state_machine_name(flow),
        "Type": "STANDARD",
        "DefinitionUri": f"statemachine/{flow}.asl.json",
        "DefinitionSubstitutions": dict(sorted(substitutions.items())),
        "Logging": {
            "Level": "ERROR",
            "IncludeExecutionData": False,
            "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": get_att(log_group_id(flow), "Arn")}}],
        },
        "Tracing": {"Enabled": settings.tracing},
        "Policies": [{"Version": "2012-10-17", "Statement": statements}],
    }
    if graph.schedule:
        props["Events"] = {
            "Schedule": {
                "Type": "Schedule",
                "Properties": {
                    "Schedule": graph.schedule,
                    "Input": schedule_input(graph),
                    "Description": f"Scheduled run of flow '{flow}' with its default parameters",
                },
            }
        }
    log_group = {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Metadata": owned_metadata("AWS::Logs::LogGroup"),
        "Properties": {
            "LogGroupName": sub("/aws/vendedlogs/states/${AWS::StackName}-" + flow),
            "RetentionInDays": settings.log_retention_days,
        },
    }
    machine = {"Type": "AWS::Serverless::StateMachine", "Metadata": owned_marker(), "Properties": props}
    return {log_group_id(flow): log_group, sm_id: machine}


OWNED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::Serverless::Function": FUNCTION_PROPERTIES,
    "AWS::IAM::Role": ROLE_PROPERTIES,
    "AWS::Serverless::StateMachine": STATE_MACHINE_PROPERTIES,
    "AWS::S3::Bucket": BUCKET_PROPERTIES,
    "AWS::S3::BucketPolicy": BUCKET_POLICY_PROPERTIES,
    "AWS::Logs::LogGroup": LOG_GROUP_PROPERTIES,
    "AWS::Serverless::LayerVersion": layers.LAYER_PROPERTIES,
}


# -------------------------------------------------------------------------------- names


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
        for candidate in (logical_id, *(logical_id + s for s in SAM_DERIVED_SUFFIXES)):
            if candidate in owners and owners[candidate] != what:
                raise LokkiError(
                    f"{what} and {owners[candidate]} both map to the logical ID {candidate!r}",
                    hint="rename one of them: logical IDs drop '_' and capitalize, so a_b and aB collide",
                )
            owners[candidate] = what

    for fixed in (names.BUCKET_ID, BUCKET_POLICY_ID):
        owners[fixed] = "the artifact bucket"
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
            fid = names.function_id(graph.name, step.name)
            claim(fid, f"step '{graph.name}.{step.name}'")
            claim(function_log_group_id(fid), f"step '{graph.name}.{step.name}'")


def owned_ids(model: TemplateModel) -> dict[str, list[str]]:
    """Logical IDs per section, recorded in the template so a later run can remove stale ones."""
    return {
        "Parameters": list(model.parameters),
        "Conditions": list(model.conditions),
        "Resources": list(model.resources),
        "Outputs": list(model.outputs),
    }
