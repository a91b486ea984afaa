"""CloudFormation that both targets write the same way: intrinsics for the model's values, and the
plain resources (bucket, bucket policy, log group, IAM role) that SAM's template and a
serverless.yml's `resources:` hold alike. Dicts use long-form intrinsics (`{"Ref": ...}`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from lokki_sam import names
from lokki_sam.batch import sizing
from lokki_sam.compile import model

Json = Any

MARKER_KEY = "lokki-sam"  # Metadata key marking what lokki-sam owns
MARKER = "generated"
BUCKET_PARAMETER = "ExistingArtifactBucket"
CREATE_BUCKET_CONDITION = "CreateArtifactBucket"

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

# The properties each emitter below sets: lokki-sam owns exactly these on its resources (set when
# generated, removed when no longer generated); the merge keeps every other property of the user's.
BUCKET_PROPERTIES = (
    "BucketEncryption",
    "PublicAccessBlockConfiguration",
    "OwnershipControls",
    "LifecycleConfiguration",
)
BUCKET_POLICY_PROPERTIES = ("Bucket", "PolicyDocument")
ROLE_PROPERTIES = ("Description", "AssumeRolePolicyDocument", "Policies", "ManagedPolicyArns")
LOG_GROUP_PROPERTIES = ("LogGroupName", "RetentionInDays")
REPOSITORY_PROPERTIES = (
    "ImageTagMutability",
    "ImageScanningConfiguration",
    "EncryptionConfiguration",
    "EmptyOnDelete",
    "LifecyclePolicy",
)
INSTANCE_PROFILE_PROPERTIES = ("Roles",)
# Of a compute environment's ComputeResources, only what lokki-sam sets: a user's Tags, key pair,
# launch template ... stay.
COMPUTE_ENVIRONMENT_PROPERTIES = (
    "Type",
    "State",
    *(
        f"ComputeResources.{key}"
        for key in (
            "Type",
            "AllocationStrategy",
            "MinvCpus",
            "MaxvCpus",
            "InstanceTypes",
            "InstanceRole",
            "Subnets",
            "SecurityGroupIds",
        )
    ),
)
JOB_QUEUE_PROPERTIES = ("Priority", "State", "ComputeEnvironmentOrder")
# Of a job definition's ContainerProperties, only what lokki-sam sets: a user's volumes, mount
# points, ephemeral storage, Linux parameters ... stay.
JOB_DEFINITION_PROPERTIES = (
    "Type",
    "PlatformCapabilities",
    "PropagateTags",
    "Timeout",
    "RetryStrategy",
    *(
        f"ContainerProperties.{key}"
        for key in (
            "Image",
            "Command",
            "JobRoleArn",
            "ExecutionRoleArn",
            "ResourceRequirements",
            "Environment",
            "LogConfiguration",
            "NetworkConfiguration",
            "FargatePlatformConfiguration",
            "RuntimePlatform",
        )
    ),
)
# Plain CloudFormation resources both targets write the same way, with the properties lokki-sam owns.
OWNED_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::IAM::Role": ROLE_PROPERTIES,
    "AWS::S3::Bucket": BUCKET_PROPERTIES,
    "AWS::S3::BucketPolicy": BUCKET_POLICY_PROPERTIES,
    "AWS::Logs::LogGroup": LOG_GROUP_PROPERTIES,
    "AWS::ECR::Repository": REPOSITORY_PROPERTIES,
    "AWS::IAM::InstanceProfile": INSTANCE_PROFILE_PROPERTIES,
    "AWS::Batch::ComputeEnvironment": COMPUTE_ENVIRONMENT_PROPERTIES,
    "AWS::Batch::JobQueue": JOB_QUEUE_PROPERTIES,
    "AWS::Batch::JobDefinition": JOB_DEFINITION_PROPERTIES,
}


class Justified(dict[str, Json]):
    """An IAM statement the template shows with the reason for its wildcard (a comment next to it).

    Only statements built as Justified get a comment: a user's Sid can never borrow a reason."""

    def __init__(self, statement: Mapping[str, Json], reason: str) -> None:
        super().__init__(statement)
        self.reason = reason


def ref(name: str) -> Json:
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str, variables: Mapping[str, Json] | None = None) -> Json:
    return {"Fn::Sub": [text, dict(variables)] if variables else text}


def owned_marker() -> dict[str, str]:
    return {MARKER_KEY: MARKER}


def owned_metadata(resource_type: str) -> dict[str, Json]:
    """The ownership marker, plus the checkov findings accepted for this type and why."""
    meta: dict[str, Json] = dict(owned_marker())
    if resource_type in CHECKOV_SKIPS:
        meta["checkov"] = {"skip": [{"id": i, "comment": why} for i, why in CHECKOV_SKIPS[resource_type]]}
    return meta


class Intrinsics:
    """The model's values as CloudFormation, with a target's logical IDs (`logical_id`)."""

    def __init__(self, logical_id: Callable[[model.Resource | model.Parameter], str]) -> None:
        self.logical_id = logical_id

    def bucket_name(self) -> Json:
        return {"Fn::If": [CREATE_BUCKET_CONDITION, ref(names.BUCKET_ID), ref(BUCKET_PARAMETER)]}

    def text(self, value: model.Sub) -> Json:
        return sub(value.text, {name: self(v) for name, v in value.variables})

    def __call__(self, value: model.Value) -> Json:
        if isinstance(value, model.Ref):
            return ref(self.logical_id(value.resource))
        if isinstance(value, model.Arn):
            if value.suffix:
                return sub("${" + self.logical_id(value.resource) + ".Arn}" + value.suffix)
            return get_att(self.logical_id(value.resource), "Arn")
        if isinstance(value, model.Sub):
            return self.text(value)
        if isinstance(value, model.BucketName):
            return self.bucket_name()
        if isinstance(value, model.Statement):
            document = {key: self(v) for key, v in value.document.items()}
            return Justified(document, value.reason) if value.reason else document
        if isinstance(value, Mapping):
            return {key: self(v) for key, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value

    def policy(self, statements: tuple[model.Statement, ...]) -> Json:
        return {"Version": "2012-10-17", "Statement": [self(s) for s in statements]}


# ------------------------------------------------------------------------------ plain resources


def bucket_parameters(bucket: model.ArtifactBucket) -> tuple[dict[str, Json], dict[str, Json]]:
    """The template's Parameters and Conditions: an existing bucket, else the stack's own."""
    parameters = {
        BUCKET_PARAMETER: {
            "Type": "String",
            "Default": bucket.existing,
            "AllowedPattern": "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            "Description": "Name of an existing S3 bucket for run artifacts; empty creates one in the stack",
        }
    }
    conditions = {CREATE_BUCKET_CONDITION: {"Fn::Equals": [ref(BUCKET_PARAMETER), ""]}}
    return parameters, conditions


def bucket_resources(bucket: model.ArtifactBucket, condition: str | None = CREATE_BUCKET_CONDITION) -> dict[str, Json]:
    """The bucket and its policy, created only under `condition` (None: always)."""
    resource = {
        "Type": "AWS::S3::Bucket",
        "Condition": condition,
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
                        "ExpirationInDays": bucket.expiry_days,
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        },
    }
    policy = {
        "Type": "AWS::S3::BucketPolicy",
        "Condition": condition,
        "Metadata": owned_marker(),
        "Properties": {
            "Bucket": ref(bucket.key),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [get_att(bucket.key, "Arn"), sub("${" + bucket.key + ".Arn}/*")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }
    if condition is None:
        del resource["Condition"], policy["Condition"]
    return {bucket.key: resource, model.BUCKET_POLICY_ID: policy}


def log_group_name(group: model.LogGroup) -> Json:
    """lokki-sam's names: a step's function (or Batch jobs) log under its stack and flow, a state
    machine's where Step Functions' log delivery expects vended logs."""
    if group.step is None:
        return sub("/aws/vendedlogs/states/${AWS::StackName}-" + group.flow)
    if group.job:
        return sub(names.job_log_group("${AWS::StackName}", group.flow, group.step))
    return sub(f"/aws/lambda/${{AWS::StackName}}/{group.flow}/{group.step}")


def log_group_resource(group: model.LogGroup) -> Json:
    return {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Metadata": owned_metadata("AWS::Logs::LogGroup"),
        "Properties": {"LogGroupName": log_group_name(group), "RetentionInDays": group.retention_days},
    }


def role_resource(role: model.Role, values: Intrinsics) -> Json:
    properties: dict[str, Json] = {
        "Description": role.description,
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": role.service}, "Action": "sts:AssumeRole"}],
        },
    }
    if role.managed_policies:
        properties["ManagedPolicyArns"] = [values(arn) for arn in role.managed_policies]
    if role.statements:
        properties["Policies"] = [{"PolicyName": role.policy_name, "PolicyDocument": values.policy(role.statements)}]
    return {"Type": "AWS::IAM::Role", "Metadata": owned_marker(), "Properties": properties}


def parameter(param: model.Parameter) -> Json:
    out: dict[str, Json] = {"Type": param.type, "Description": param.description}
    if param.default is not None:
        out["Default"] = ",".join(param.default)
    return out


# ------------------------------------------------------------------------------------- AWS Batch


def repository_resource(repository: model.ImageRepository) -> Json:
    """The stack's Batch images: private, encrypted, scanned on push, tags immutable (a tag names its
    content: compile/batch_images.py), the newest `keep_images` kept, emptied when the stack goes."""
    expire = {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"Keep the newest {repository.keep_images} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": repository.keep_images,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    return {
        "Type": "AWS::ECR::Repository",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Metadata": owned_marker(),
        "Properties": {
            "ImageTagMutability": "IMMUTABLE",
            "ImageScanningConfiguration": {"ScanOnPush": True},
            "EncryptionConfiguration": {"EncryptionType": "KMS"},  # AWS's managed key for ECR
            "EmptyOnDelete": True,
            "LifecyclePolicy": {"LifecyclePolicyText": json.dumps(expire, separators=(",", ":"))},
        },
    }


def instance_profile_resource(profile: model.InstanceProfile) -> Json:
    properties = {"Roles": [ref(profile.role.key)]}
    return {"Type": "AWS::IAM::InstanceProfile", "Metadata": owned_marker(), "Properties": properties}


def compute_environment_resource(environment: model.ComputeEnvironment, values: Intrinsics) -> Json:
    """A managed environment Batch scales between 0 and `max_vcpus` (Batch's service-linked role)."""
    resources: dict[str, Json]
    if environment.platform == "fargate":
        resources = {"Type": "FARGATE_SPOT" if environment.spot else "FARGATE", "MaxvCpus": environment.max_vcpus}
    else:
        assert environment.instance_profile is not None
        resources = {
            "Type": "SPOT" if environment.spot else "EC2",
            "AllocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED" if environment.spot else "BEST_FIT_PROGRESSIVE",
            "MinvCpus": 0,
            "MaxvCpus": environment.max_vcpus,
            "InstanceTypes": list(environment.instance_types),
            "InstanceRole": get_att(environment.instance_profile.key, "Arn"),
        }
    resources["Subnets"] = values(environment.subnets)
    resources["SecurityGroupIds"] = values(environment.security_groups)
    properties = {"Type": "MANAGED", "State": "ENABLED", "ComputeResources": resources}
    return {"Type": "AWS::Batch::ComputeEnvironment", "Metadata": owned_marker(), "Properties": properties}


def job_queue_resource(queue: model.JobQueue) -> Json:
    properties = {
        "Priority": 1,
        "State": "ENABLED",
        "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": ref(queue.environment.key)}],
    }
    return {"Type": "AWS::Batch::JobQueue", "Metadata": owned_marker(), "Properties": properties}


def job_definition_resource(job: model.JobDefinition, values: Intrinsics) -> Json:
    """The step's job: its image and size, the entry point as its command, its environment, its
    roles, and its log stream in its own log group."""

    size = job.size
    requirements = [
        {"Type": "VCPU", "Value": str(sizing.shown_number(size.cpu))},
        {"Type": "MEMORY", "Value": str(size.memory)},
    ]
    if size.gpu:
        requirements.append({"Type": "GPU", "Value": str(size.gpu)})
    container: dict[str, Json] = {
        "Image": values(job.image_uri),
        "Command": list(names.BATCH_COMMAND),
        "JobRoleArn": get_att(job.role.key, "Arn"),
        "ExecutionRoleArn": get_att(job.execution_role.key, "Arn"),
        "ResourceRequirements": requirements,
        "Environment": [{"Name": name, "Value": values(value)} for name, value in job.environment.items()],
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": ref(job.log_group.key),
                "awslogs-region": ref("AWS::Region"),
                "awslogs-stream-prefix": job.step,
            },
        },
    }
    if size.platform == "fargate":
        container |= {
            "NetworkConfiguration": {"AssignPublicIp": "ENABLED" if job.public_ip else "DISABLED"},
            "FargatePlatformConfiguration": {"PlatformVersion": "LATEST"},
            "RuntimePlatform": {
                "CpuArchitecture": FARGATE_ARCHITECTURES[job.architecture],
                "OperatingSystemFamily": "LINUX",
            },
        }
    properties = {
        "Type": "container",
        "PlatformCapabilities": [size.platform.upper()],
        "PropagateTags": True,
        "Timeout": {"AttemptDurationSeconds": size.timeout},
        "RetryStrategy": INFRASTRUCTURE_RETRY,
        "ContainerProperties": container,
    }
    return {"Type": "AWS::Batch::JobDefinition", "Metadata": owned_marker(), "Properties": properties}


# A job the platform stopped (a Spot reclaim, a host that went away) is run again by Batch; any other
# end is final here: the step's own Retry runs inside the job (lokki_sam/batch/entry.py). Batch's
# patterns match from the start, a trailing `*` matching the rest.
INFRASTRUCTURE_RETRY = {
    "Attempts": 3,
    "EvaluateOnExit": [
        {"OnStatusReason": "Host EC2*", "Action": "RETRY"},
        {"OnStatusReason": "Your Spot Task was interrupted*", "Action": "RETRY"},
        {"OnReason": "*", "Action": "EXIT"},
    ],
}


FARGATE_ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64"}
