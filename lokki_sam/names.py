"""Names shared by the ASL compiler, the SAM renderer, the runtime and the deployed-flow commands.

The cross-component contract lives here and in `protocol.py`, outside the renderers, so the
runtime and the CLI never import a compiler.

One place decides every generated name, so a state machine's `${...}` substitutions, the
template's logical IDs and outputs, and the runtime's environment always agree.
"""

from __future__ import annotations

import re

HANDLER = "lokki_sam.runtime.handler"

# Environment of every generated function (read by lokki_sam.runtime).
ENV_MODULE = "LOKKI_MODULE"  # dotted module of the flow, importable from the function's CodeUri
ENV_FLOW = "LOKKI_FLOW"  # flow name
ENV_STEP = "LOKKI_STEP"  # step name (one function per flow and step)
ENV_BUCKET = "LOKKI_BUCKET"  # artifact bucket
ENV_PREFIX = "LOKKI_PREFIX"  # the flow's key prefix in the bucket; the runtime refuses anything outside it
ENV_VERSION = "LOKKI_VERSION"  # the lokki-sam that generated the template: the runtime must be that one
# An S3 endpoint for the runtime's own client, declared empty in every function so that
# `sam local invoke --env-vars events/env.json` can point it at a local S3; empty: AWS's endpoint.
ENV_ENDPOINT_URL = "LOKKI_ENDPOINT_URL"

START_STATE = "Start flow"  # the first state; contains a space: can never collide with a node or map id
RESULT_WRITER_DIR = "_resultwriter"  # '_' keeps it apart from run ids and node ids

# The Sids of the IAM statements lokki-sam writes: a step's own `permissions` cannot use them.
GENERATED_SIDS = (
    "OwnLogs",
    "ReadRunArtifacts",
    "WriteOwnArtifacts",
    "ListRunArtifacts",
    "Tracing",
    "InvokeOwnFunctions",
    "MapItemReader",
    "MapResultWriter",
    "DistributedMapStartChildren",
    "DistributedMapManageChildren",
    "DeliverLogs",
    "WriteOwnBatchResults",
    "SubmitOwnJobs",
    "DescribeJobs",
    "TerminateOwnJobs",
    "BatchJobEvents",
    "ReadBatchResults",
    "PullOwnImages",
    "RegistryLogin",
    "JobLogs",
)
WILDCARD_REASON_KEY = "WildcardReason"  # in a step's permission: why it needs "*" (lokki-sam's key, not IAM's)

BUCKET_ID = "ArtifactBucket"
BUCKET_SUBSTITUTION = "ArtifactBucketName"
PREFIX_SUBSTITUTION = "ArtifactPrefix"  # the flow's prefix (with the stack), in the state machine
BUCKET_OUTPUT = "ArtifactBucketName"


def pascal(name: str) -> str:
    """`get_birds` -> `GetBirds`; the result is a valid CloudFormation logical-ID fragment."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    return "".join(p[:1].upper() + p[1:] for p in parts)


def flow_prefix(stack: str, flow: str) -> str:
    """A flow's key prefix in the artifact bucket. The stack is part of it: two stacks sharing a
    bucket (dev and prod) can never read or write each other's pickles."""
    return f"lokki/{stack}/{flow}"


def template_flow_prefix(flow: str) -> str:
    """`flow_prefix` inside the template (a `Fn::Sub` string: the stack is only known at deploy)."""
    return flow_prefix("${AWS::StackName}", flow)


def function_id(flow: str, step: str) -> str:
    return f"{pascal(flow)}{pascal(step)}Function"


def serverless_function_key(flow: str, step: str) -> str:
    """A step's function in a serverless.yml (`functions:`), e.g. `BirdsGetBirds`."""
    return f"{pascal(flow)}{pascal(step)}"


def serverless_function_id(flow: str, step: str) -> str:
    """Its logical ID: the Serverless Framework appends `LambdaFunction` to the key."""
    return f"{serverless_function_key(flow, step)}LambdaFunction"


def function_arn_substitution(flow: str, step: str) -> str:
    return f"{function_id(flow, step)}Arn"


def job_definition_id(flow: str, step: str) -> str:
    """The AWS Batch job definition of a Batch step (one per flow and step, as a function is)."""
    return f"{pascal(flow)}{pascal(step)}JobDefinition"


def job_definition_substitution(flow: str, step: str) -> str:
    return f"{job_definition_id(flow, step)}Arn"


def job_queue_substitution(flow: str, step: str) -> str:
    """The queue a Batch step's jobs go to, per step: the stack's Fargate queue, its EC2 queue (a GPU
    step), or lokki.toml's `[batch] job_queue`; which one is the template's choice, not the definition's."""
    return f"{pascal(flow)}{pascal(step)}JobQueueArn"


def job_role_id(flow: str, step: str) -> str:
    """The role a Batch step's job runs as (its containers' AWS calls), scoped as a function's role."""
    return f"{pascal(flow)}{pascal(step)}JobRole"


def job_log_group_id(flow: str, step: str) -> str:
    return f"{pascal(flow)}{pascal(step)}JobLogGroup"


def job_log_group(stack: str, flow: str, step: str) -> str:
    """The CloudWatch log group of a Batch step's jobs (one stream per job)."""
    return f"/aws/batch/{stack}/{flow}/{step}"


# What every stack with Batch steps shares: the repository of their images, the role that pulls them
# and writes the jobs' logs, and (unless `[batch] job_queue` names one) a compute environment and a
# job queue per platform (a queue cannot mix Fargate and EC2 compute environments).
BATCH_REPOSITORY_ID = "BatchImageRepository"
BATCH_REPOSITORY_OUTPUT = "BatchImageRepositoryName"  # what `lokki-sam push` pushes to
BATCH_EXECUTION_ROLE_ID = "BatchExecutionRole"
BATCH_INSTANCE_ROLE_ID = "BatchInstanceRole"  # EC2 compute environments: the ECS agent on the instances
BATCH_INSTANCE_PROFILE_ID = "BatchInstanceProfile"
COMPUTE_ENVIRONMENT_IDS = {"fargate": "BatchComputeEnvironment", "ec2": "BatchEc2ComputeEnvironment"}
JOB_QUEUE_IDS = {"fargate": "BatchJobQueue", "ec2": "BatchEc2JobQueue"}
BATCH_SUBNETS_PARAMETER = "BatchSubnets"
BATCH_SECURITY_GROUPS_PARAMETER = "BatchSecurityGroups"
BATCH_COMMAND = ("python3", "-m", "lokki_sam.batch")  # the job's command: the image's Python, the entry point
BATCH_RESULT_DIR = "_batch"  # '_' keeps it apart from run ids, like RESULT_WRITER_DIR


def job_name(flow: str, node: str) -> str:
    """A Batch job's name: 1 to 128 letters, digits, '-' and '_' (node ids are `name` or `name-2`)."""
    return f"{flow}-{node}"[:128]


def batch_result_key(execution: str, node: str) -> str:
    """Where a Batch job leaves what its step returns to the state machine (a map source's
    manifest location), relative to the flow's prefix: a job has no return value of its own."""
    return f"{BATCH_RESULT_DIR}/{execution}/{node}.json"


def state_machine_id(flow: str) -> str:
    return f"{pascal(flow)}StateMachine"


def state_machine_name_parameter(flow: str) -> str:
    return f"{pascal(flow)}StateMachineName"


def state_machine_arn_output(flow: str) -> str:
    return f"{pascal(flow)}StateMachineArn"


# A resumed run is a new execution of the same run: `<run id>.resume-<n>`. '.' is in no run id
# lokki-sam makes, and Step Functions allows it in execution names; the runtime reads the run id
# back from the execution name, so a resume needs no change to the state machine.
RESUME_MARK = ".resume-"
_RESUME_RE = re.compile(r"^(?P<run>.+)\.resume-(?P<n>[1-9][0-9]{0,3})$")


# In a resumed execution's input, beside the flow parameters: the steps `--rerun` forces (node id ->
# the attempt that asked). ':' keeps it apart from every parameter name (those are identifiers).
RERUN_INPUT_KEY = "lokki:rerun"


def resume_execution_name(run_id: str, attempt: int) -> str:
    return f"{run_id}{RESUME_MARK}{attempt}"


def run_of_execution(name: str) -> tuple[str, int]:
    """(run id, resume attempt: 0 for the run's first execution) of an execution name."""
    found = _RESUME_RE.match(name)
    return (found["run"], int(found["n"])) if found else (name, 0)


def map_label(map_id: str) -> str:
    """A Map state's Label (map run ARNs carry it): at most 40 characters, letters, digits, '-' and '_'."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in map_id)
    return cleaned[:40]


def result_writer_prefix(prefix: str, map_id: str) -> str:
    """Where a distributed map's ResultWriter puts its files, under the flow's `prefix` (nothing
    reads them: the store has every result)."""
    return f"{prefix}/{RESULT_WRITER_DIR}/{map_id}"
