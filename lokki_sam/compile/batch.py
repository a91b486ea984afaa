"""The deployment model's AWS Batch part: what a stack with Batch steps holds besides its functions.

Per Batch step (compile/model.py `JobDefinition`): a job definition (Fargate, or EC2 for a GPU or
`platform="ec2"`) with the job's size as ResourceRequirements, its image, the command
`python3 -m lokki_sam.batch` and the environment a function of the step would have; a job role
scoped to the flow's prefix exactly as a function's role is; a log group of its own.

Per stack: the ECR repository of the images (`lokki-sam push` fills it), one execution role that
pulls them and writes the jobs' logs, and, unless lokki.toml's `[batch] job_queue` names a queue,
a managed compute environment and a job queue per platform the steps use (a queue cannot mix
Fargate and EC2 environments), in the subnets and security groups of two template parameters.

The state machine's part (which queue each step's jobs go to, the `.sync` permissions) is
`machine_statements` and `substitutions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lokki_sam import names
from lokki_sam.batch import sizing
from lokki_sam.compile import batch_images
from lokki_sam.compile.images import ImageSet
from lokki_sam.compile.model import (
    Arn,
    ComputeEnvironment,
    ImageRepository,
    InstanceProfile,
    JobDefinition,
    JobQueue,
    LogGroup,
    Parameter,
    Ref,
    Resource,
    Role,
    Settings,
    Statement,
    Sub,
    Value,
    allow,
    artifact_statements,
    s3_arn,
    step_environment,
    user_statement,
)
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph

KEEP_IMAGES = 50  # the repository keeps the newest images; older ones (old job definition revisions') expire
# The ECS agent's role on the instances of an EC2 compute environment: AWS's managed policy for it.
INSTANCE_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
# EC2 instance types by architecture: `optimal` is Batch's pick of current C, M and R instances (x86);
# GPU steps add GPU families (g4dn/g5: NVIDIA T4/A10G; g5g: Graviton with T4G).
EC2_INSTANCE_TYPES = {"x86_64": ("optimal",), "arm64": ("c7g", "m7g", "r7g")}
EC2_GPU_INSTANCE_TYPES = {"x86_64": ("g4dn", "g5"), "arm64": ("g5g",)}
SYNC_RULE = "rule/StepFunctionsGetEventsForBatchJobsRule"  # the rule Step Functions manages for `.sync`
ACCOUNT_ARN = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:"


@dataclass(frozen=True)
class StackBatch:
    """The stack-wide Batch resources, and each Batch step's job definition by (flow, step)."""

    resources: tuple[Resource, ...]
    parameters: tuple[Parameter, ...]
    jobs: Mapping[tuple[str, str], JobDefinition]
    repository: ImageRepository | None


def build(graphs: Sequence[FlowGraph], settings: Settings, runtime: str) -> StackBatch:
    image_sets = batch_images.image_sets(graphs, settings.architecture)
    if not image_sets:
        return StackBatch((), (), {}, None)
    config = settings.batch
    steps = [(graph, step) for graph in graphs for step in graph.steps if step.options.on_batch]
    sizes = {
        (graph.name, step.name): sizing.job_size(
            step.options.cpu,
            step.options.memory,
            step.options.gpu,
            step.options.timeout,
            step.options.platform,
            config,
            f"flow '{graph.name}', step '{step.name}'",
        )
        for graph, step in steps
    }
    repository = ImageRepository(names.BATCH_REPOSITORY_ID, KEEP_IMAGES)
    log_groups = {
        (graph.name, step.name): LogGroup(
            names.job_log_group_id(graph.name, step.name),
            graph.name,
            step.name,
            settings.log_retention_days,
            job=True,
        )
        for graph, step in steps
    }
    execution_role = _execution_role(repository, list(log_groups.values()))
    resources: list[Resource] = [repository, execution_role]
    parameters: list[Parameter] = []
    queues: dict[str, Value]
    existing = str(config.get("batch_job_queue") or "")
    if existing:
        queues = dict.fromkeys(sizing.PLATFORMS, existing_queue_arn(existing))
    else:
        platforms = {sizes[key].platform for key in sizes}
        parameters = _network_parameters(config)
        subnets, groups = Ref(parameters[0]), Ref(parameters[1])
        queues = {}
        for platform in sizing.PLATFORMS:
            if platform not in platforms:
                continue
            arch: dict[str, list[str]] = {}
            for key, size in sizes.items():
                if size.platform == platform:
                    arch.setdefault(image_sets[key].architecture, []).append(".".join(key))
            gpu = any(size.gpu for size in sizes.values() if size.platform == platform)
            environment, extra = _compute_environment(platform, arch, gpu, config, subnets, groups)
            queue = JobQueue(names.JOB_QUEUE_IDS[platform], environment)
            resources += [*extra, environment, queue]
            queues[platform] = Ref(queue)
    jobs = {}
    for graph, step in steps:
        key = (graph.name, step.name)
        image = image_sets[key]
        jobs[key] = JobDefinition(
            key=names.job_definition_id(graph.name, step.name),
            flow=graph.name,
            step=step.name,
            image=image,
            image_tag=image_tag(image, runtime, settings),
            repository=repository,
            size=sizes[key],
            architecture=image.architecture,
            environment=step_environment(graph, step, settings, endpoint=False),
            role=_job_role(graph, step, settings),
            execution_role=execution_role,
            log_group=log_groups[key],
            queue=queues[sizes[key].platform],
            public_ip=bool(config.get("batch_public_ip")),
        )
    return StackBatch(tuple(resources), tuple(parameters), jobs, repository)


def image_tag(image: ImageSet, runtime: str, settings: Settings) -> str:
    """The tag of the image `lokki-sam push` pushes: what it is built from (compile/batch_images.py)."""
    if settings.root is None:
        raise LokkiError("Batch steps need the template's folder to tag their images (a programming error)")
    return batch_images.tag(image, runtime, settings.root, settings.code_uri, settings.template)


def existing_queue_arn(queue: str) -> Value:
    """lokki.toml's `[batch] job_queue` (a name or an ARN) as an ARN."""
    if queue.startswith("arn:"):
        return queue
    return Sub(ACCOUNT_ARN.replace("{service}", "batch") + f"job-queue/{queue}")


def _network_parameters(config: Mapping[str, Any]) -> list[Parameter]:
    """Where the compute environments' jobs run: lokki.toml's `[batch] subnets` and `security_groups`
    as the defaults (none: `sam deploy --guided` asks)."""
    subnets = config.get("batch_subnets")
    groups = config.get("batch_security_groups")
    return [
        Parameter(
            names.BATCH_SUBNETS_PARAMETER,
            "List<AWS::EC2::Subnet::Id>",
            "Subnets of the AWS Batch compute environments (with a route to ECR and S3: a NAT gateway, "
            "VPC endpoints, or [batch] public_ip = true in public subnets)",
            tuple(subnets) if subnets else None,
        ),
        Parameter(
            names.BATCH_SECURITY_GROUPS_PARAMETER,
            "List<AWS::EC2::SecurityGroup::Id>",
            "Security groups of the AWS Batch jobs (outbound HTTPS to ECR, S3 and CloudWatch Logs; no inbound)",
            tuple(groups) if groups else None,
        ),
    ]


def _compute_environment(
    platform: str,
    architectures: Mapping[str, list[str]],
    gpu: bool,
    config: Mapping[str, Any],
    subnets: Value,
    groups: Value,
) -> tuple[ComputeEnvironment, list[Resource]]:
    spot = bool(config.get("batch_spot"))
    max_vcpus = int(config.get("batch_max_vcpus") or 256)
    key = names.COMPUTE_ENVIRONMENT_IDS[platform]
    if platform == "fargate":
        return ComputeEnvironment(key, platform, spot, max_vcpus, subnets, groups), []
    if len(architectures) > 1:
        shown = "; ".join(f"{a}: {', '.join(steps)}" for a, steps in sorted(architectures.items()))
        raise LokkiError(
            "the Batch steps that run on EC2 share one compute environment, whose instances have one "
            f"architecture; these steps ask for {' and '.join(sorted(architectures))} ({shown})",
            where='Batch steps on EC2 (a GPU, or platform="ec2")',
            hint="give them one architecture (@step(architecture=...) or config architecture)",
        )
    (arch,) = architectures
    types = EC2_INSTANCE_TYPES[arch] + (EC2_GPU_INSTANCE_TYPES[arch] if gpu else ())
    role = Role(
        names.BATCH_INSTANCE_ROLE_ID,
        "lokki-sam: the ECS agent on the instances of the stack's AWS Batch EC2 compute environment",
        "ec2.amazonaws.com",
        (),
        managed_policies=(Sub(INSTANCE_POLICY),),
    )
    profile = InstanceProfile(names.BATCH_INSTANCE_PROFILE_ID, role)
    environment = ComputeEnvironment(key, platform, spot, max_vcpus, subnets, groups, types, profile)
    return environment, [role, profile]


def _execution_role(repository: ImageRepository, log_groups: list[LogGroup]) -> Role:
    """What the platform does for every job of the stack: pull its image, write its log stream."""
    return Role(
        names.BATCH_EXECUTION_ROLE_ID,
        "lokki-sam: pulls the stack's Batch images and writes its Batch jobs' logs",
        "ecs-tasks.amazonaws.com",
        (
            allow(
                "PullOwnImages",
                ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                Arn(repository),
            ),
            allow("RegistryLogin", "ecr:GetAuthorizationToken", "*"),
            allow("JobLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [Arn(g) for g in log_groups]),
        ),
        policy_name="lokki-sam-batch-execution",
    )


def _job_role(graph: FlowGraph, step: Any, settings: Settings) -> Role:
    """The job's own calls: the flow's artifacts exactly as the step's function would reach them (its
    own nodes' directories, and the `_batch/` object a map source's job leaves), and its permissions."""
    prefix = names.template_flow_prefix(graph.name)
    statements: list[Statement] = artifact_statements(graph, step)
    results = [
        s3_arn(f"/{prefix}/{names.batch_result_key('*', n.id)}")
        for n in graph.nodes
        if n.step.name == step.name and graph.map_fed_by(n.id) is not None
    ]
    if results:  # the state machine reads a map source's result there (entry.py writes it)
        statements.insert(2, allow("WriteOwnBatchResults", "s3:PutObject", results))
    statements.extend(user_statement(p) for p in step.options.permissions)
    return Role(
        names.job_role_id(graph.name, step.name),
        f"lokki-sam Batch step {graph.name}.{step.name}: its flow's artifacts",
        "ecs-tasks.amazonaws.com",
        tuple(statements),
    )


def substitutions(jobs: Sequence[JobDefinition]) -> dict[str, Value]:
    """The definition's `${...}` variables of these Batch steps: job definition and queue ARNs."""
    found: dict[str, Value] = {}
    for job in jobs:
        found[names.job_definition_substitution(job.flow, job.step)] = Ref(job)
        found[names.job_queue_substitution(job.flow, job.step)] = job.queue
    return found


def machine_statements(graph: FlowGraph, jobs: Sequence[JobDefinition]) -> list[Statement]:
    """What a state machine needs for its `batch:submitJob.sync` Tasks (Step Functions' Batch IAM
    page, made narrower where IAM allows): submit to its own queues and definitions only, follow and
    stop the jobs, manage the events rule `.sync` listens on, and read a Batch map source's result."""
    if not jobs:
        return []
    queues = list({repr(j.queue): j.queue for j in jobs}.values())
    account = ACCOUNT_ARN
    out = [
        allow("SubmitOwnJobs", "batch:SubmitJob", [Ref(j) for j in jobs] + queues),
        allow("DescribeJobs", "batch:DescribeJobs", "*"),
        allow("TerminateOwnJobs", "batch:TerminateJob", Sub(account.replace("{service}", "batch") + "job/*")),
        allow(
            "BatchJobEvents",
            ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            Sub(account.replace("{service}", "events") + SYNC_RULE),
        ),
    ]
    prefix = names.template_flow_prefix(graph.name)
    sources = [m.source for m in graph.maps if graph.node(m.source).step.options.on_batch]
    if sources:
        keys = [s3_arn(f"/{prefix}/{names.batch_result_key('*', source)}") for source in sources]
        out.append(allow("ReadBatchResults", "s3:GetObject", keys))
    return out
