"""The template resources of AWS Batch steps (compile/batch.py), as `generate` writes them and as
CloudFormation (cfn-lint, samtranslator) reads them: a job definition, job role and log group per
Batch step; the stack's image repository, execution role, compute environment and queue per
platform; the state machine's `.sync` permissions. Checked against the Batch API's and Step
Functions' documented names and against what each piece must reach, never more.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import __version__, names
from lokki_sam.compile import asl, model
from lokki_sam.config import load_config
from lokki_sam.errors import LokkiError
from tests.flows import batch_gpu, batch_mixed
from tests.support.sam import (
    ACCOUNT,
    REGION,
    REPO,
    STACK,
    evaluate,
    forget_module,
    generate_in_process,
    lint,
    load,
    make_app,
    role_statements,
    transform,
)

pytestmark = pytest.mark.usefixtures("unload_modules")

FLOWS = REPO / "tests" / "flows"
NETWORK = {"batch_subnets": "subnet-0123456789abcdef0", "batch_security_groups": "sg-0123456789abcdef0"}
SYNC_SIDS = ["SubmitOwnJobs", "DescribeJobs", "TerminateOwnJobs", "BatchJobEvents"]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """name -> the generated template: Fargate steps (with lokki.toml's subnets), GPU and EC2 steps,
    and an existing queue named in lokki.toml."""
    cases: dict[str, tuple[Path, dict[str, Any]]] = {
        "mixed": (FLOWS / "batch_mixed.py", NETWORK),
        "gpu": (FLOWS / "batch_gpu.py", {**NETWORK, "batch_spot": "true"}),
        "queue": (FLOWS / "batch_mixed.py", {"batch_job_queue": "analytics"}),
    }
    out = {}
    with pytest.MonkeyPatch.context() as mp:  # module scope: runs before the autouse env fixture
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        for name, (source, config) in cases.items():
            out[name] = make_app(tmp_path_factory.mktemp(name), [source], **config)
            forget_module(source.stem)
    yield out


def resources(path: Path) -> dict[str, Any]:
    return dict(load(path.read_text())["Resources"])


def job(path: Path, flow: str, step: str) -> dict[str, Any]:
    definition = resources(path)[names.job_definition_id(flow, step)]
    assert definition["Type"] == "AWS::Batch::JobDefinition"
    return dict(definition["Properties"])


def resolved(path: Path, value: Any) -> Any:
    cfn = transform(path.read_text())
    return evaluate(value, cfn["Resources"])


@pytest.mark.parametrize("app", ["mixed", "gpu", "queue"])
def test_cfn_lint_has_no_findings(apps: dict[str, Path], app: str) -> None:
    assert lint(apps[app].read_text()) == []


def test_each_batch_step_is_a_job_definition_with_its_size_image_command_and_environment(
    apps: dict[str, Path],
) -> None:
    path = apps["mixed"]
    found = resources(path)
    graph = batch_mixed.batch_single.graph
    for step in graph.steps:
        if not step.options.on_batch:  # a Lambda step keeps its function, a Batch step has none
            assert names.function_id(graph.name, step.name) in found
            continue
        assert names.function_id(graph.name, step.name) not in found
        props = job(path, graph.name, step.name)
        assert (props["Type"], props["PlatformCapabilities"], props["PropagateTags"]) == (
            "container",
            ["FARGATE"],
            True,
        )
        assert props["Timeout"] == {"AttemptDurationSeconds": 3600}  # [batch] timeout's default
        # Batch runs a job again only when the platform stopped it: the step's own Retry is in the job.
        retry = props["RetryStrategy"]
        assert retry["Attempts"] == 3 and retry["EvaluateOnExit"][-1] == {"OnReason": "*", "Action": "EXIT"}
        assert {e["OnStatusReason"] for e in retry["EvaluateOnExit"][:-1]} == {
            "Host EC2*",
            "Your Spot Task was interrupted*",
        }
        container = resolved(path, props["ContainerProperties"])
        # numbers: 0.5 vCPU / 1024 MiB of its own; the others lokki.toml's defaults (1 / 2048).
        size = {"VCPU": "0.5", "MEMORY": "1024"} if step.name == "numbers" else {"VCPU": "1", "MEMORY": "2048"}
        assert {r["Type"]: r["Value"] for r in container["ResourceRequirements"]} == size
        assert container["Command"] == ["python3", "-m", "lokki_sam.batch"]
        repository, tag = container["Image"].rsplit(":", 1)
        assert repository == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{names.BATCH_REPOSITORY_ID}"
        key = tag.split("-")[0]
        dockerfile = (path.parent / "images" / key / "Dockerfile").read_text()
        assert 'ENTRYPOINT []\nCMD ["python3", "-m", "lokki_sam.batch"]' in dockerfile
        assert "FROM public.ecr.aws/lambda/python:3.11-arm64" in dockerfile  # config architecture: arm64
        assert container["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
        assert container["NetworkConfiguration"] == {"AssignPublicIp": "DISABLED"}
        environment = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert environment == {
            names.ENV_MODULE: "batch_mixed",
            names.ENV_FLOW: graph.name,
            names.ENV_STEP: step.name,
            names.ENV_BUCKET: "stack-artifactbucket-1",
            names.ENV_PREFIX: names.flow_prefix(STACK, graph.name),
            names.ENV_VERSION: __version__,
            "LOKKI_LOG_LEVEL": "INFO",
            "AWS_DEFAULT_REGION": REGION,
        }
        role, group = names.job_role_id(graph.name, step.name), names.job_log_group_id(graph.name, step.name)
        assert container["JobRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{role}"
        assert container["ExecutionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{names.BATCH_EXECUTION_ROLE_ID}"
        assert container["LogConfiguration"] == {
            "LogDriver": "awslogs",
            "Options": {"awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": step.name},
        }
        log_group = resolved(path, found[group]["Properties"])
        assert log_group == {"LogGroupName": names.job_log_group(STACK, graph.name, step.name), "RetentionInDays": 30}


def test_job_roles_reach_only_their_flows_prefix_as_function_roles_do(apps: dict[str, Path]) -> None:
    """Read the flow's prefix, write only the step's own nodes' directories (and, for a map source,
    the `_batch/` object the state machine reads), list the prefix; assumed by ECS tasks."""
    path = apps["mixed"]
    cfn = transform(path.read_text())
    prefix = f"arn:aws:s3:::stack-artifactbucket-1/{names.flow_prefix(STACK, 'batch_only')}"
    for step in ("numbers", "cube", "shift", "total"):
        role_id = names.job_role_id("batch_only", step)
        trust = cfn["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
        statements = {s["Sid"]: (s["Action"], s["Resource"]) for s in role_statements(cfn, role_id)}
        expected = {
            "ReadRunArtifacts": (["s3:GetObject"], [f"{prefix}/*"]),
            "WriteOwnArtifacts": (["s3:PutObject", "s3:AbortMultipartUpload"], [f"{prefix}/*/step={step}/*"]),
            "ListRunArtifacts": (["s3:ListBucket"], ["arn:aws:s3:::stack-artifactbucket-1"]),
        }
        if step == "numbers":  # the map source: its job leaves the manifest's location for the state machine
            expected["WriteOwnBatchResults"] = (["s3:PutObject"], [f"{prefix}/_batch/*/numbers.json"])
        assert statements == expected, step


def test_the_execution_role_pulls_the_stacks_images_and_writes_its_jobs_logs_only(apps: dict[str, Path]) -> None:
    path = apps["mixed"]
    cfn = transform(path.read_text())
    statements = {s["Sid"]: (s["Action"], s["Resource"]) for s in role_statements(cfn, names.BATCH_EXECUTION_ROLE_ID)}
    groups = [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{names.job_log_group_id(graph.name, step.name)}:*"
        for graph in (batch_mixed.batch_mixed.graph, batch_mixed.batch_single.graph, batch_mixed.batch_only.graph)
        for step in graph.steps
        if step.options.on_batch
    ]
    assert statements == {
        "PullOwnImages": (
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [f"arn:aws:AWS::ECR::Repository:{names.BATCH_REPOSITORY_ID}"],
        ),
        "RegistryLogin": (["ecr:GetAuthorizationToken"], ["*"]),  # ECR's login: no resource-level permissions
        "JobLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], groups),
    }
    repository = resources(path)[names.BATCH_REPOSITORY_ID]["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE" and repository["ImageScanningConfiguration"]["ScanOnPush"]
    assert repository["EncryptionConfiguration"] == {"EncryptionType": "KMS"} and repository["EmptyOnDelete"] is True


def test_the_state_machine_role_has_exactly_the_sync_permissions(apps: dict[str, Path]) -> None:
    """Step Functions' Batch `.sync` needs SubmitJob, DescribeJobs, TerminateJob and the events rule it
    manages: SubmitJob on its own definitions and queue, TerminateJob on the account's jobs (their ids
    are made at run time), DescribeJobs on '*' (no resource-level permissions)."""
    path = apps["mixed"]
    cfn = transform(path.read_text())
    machine = cfn["Resources"][names.state_machine_id("batch_only")]
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = role_statements(cfn, role_id)
    by_sid = {s["Sid"]: (s["Action"], s["Resource"]) for s in statements}
    steps = ("numbers", "cube", "shift", "total")
    definitions = [names.job_definition_id("batch_only", s) for s in steps]
    assert by_sid["SubmitOwnJobs"] == (["batch:SubmitJob"], [*definitions, names.JOB_QUEUE_IDS["fargate"]])
    assert by_sid["DescribeJobs"] == (["batch:DescribeJobs"], ["*"])
    assert by_sid["TerminateOwnJobs"] == (["batch:TerminateJob"], [f"arn:aws:batch:{REGION}:{ACCOUNT}:job/*"])
    assert by_sid["BatchJobEvents"] == (
        ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForBatchJobsRule"],
    )
    prefix = f"arn:aws:s3:::stack-artifactbucket-1/{names.flow_prefix(STACK, 'batch_only')}"
    assert by_sid["ReadBatchResults"] == (["s3:GetObject"], [f"{prefix}/_batch/*/numbers.json"])
    # Every step a Batch job: no function to invoke, so no lambda permission at all.
    assert not any(a.startswith("lambda:") for s in statements for a in s["Action"])
    assert [sid for sid in by_sid if sid in SYNC_SIDS] == SYNC_SIDS


def test_each_steps_queue_and_definition_are_substitutions_of_the_definition(apps: dict[str, Path]) -> None:
    text = apps["mixed"].read_text()
    for graph in (batch_mixed.batch_single.graph, batch_mixed.batch_only.graph):
        props = load(text)["Resources"][names.state_machine_id(graph.name)]["Properties"]
        substitutions = props["DefinitionSubstitutions"]
        assert sorted(substitutions) == asl.substitution_names(graph)
        for step in graph.steps:
            if step.options.on_batch:
                assert substitutions[names.job_queue_substitution(graph.name, step.name)] == {"Ref": "BatchJobQueue"}
                assert substitutions[names.job_definition_substitution(graph.name, step.name)] == {
                    "Ref": names.job_definition_id(graph.name, step.name)
                }
    compute = load(text)["Resources"][names.COMPUTE_ENVIRONMENT_IDS["fargate"]]["Properties"]
    assert compute["ComputeResources"] == {
        "Type": "FARGATE",
        "MaxvCpus": 256,
        "Subnets": {"Ref": names.BATCH_SUBNETS_PARAMETER},
        "SecurityGroupIds": {"Ref": names.BATCH_SECURITY_GROUPS_PARAMETER},
    }
    parameters = load(text)["Parameters"]
    assert parameters[names.BATCH_SUBNETS_PARAMETER]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert parameters[names.BATCH_SUBNETS_PARAMETER]["Default"] == NETWORK["batch_subnets"]


def test_gpu_and_ec2_steps_run_in_an_ec2_compute_environment(apps: dict[str, Path]) -> None:
    path = apps["gpu"]
    found = resources(path)
    assert names.COMPUTE_ENVIRONMENT_IDS["fargate"] not in found and names.JOB_QUEUE_IDS["fargate"] not in found
    compute = found[names.COMPUTE_ENVIRONMENT_IDS["ec2"]]["Properties"]["ComputeResources"]
    assert compute["Type"] == "SPOT" and compute["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert compute["InstanceTypes"] == ["optimal", "g4dn", "g5"] and compute["MinvCpus"] == 0
    assert compute["InstanceRole"] == {"Fn::GetAtt": [names.BATCH_INSTANCE_PROFILE_ID, "Arn"]}
    profile = found[names.BATCH_INSTANCE_PROFILE_ID]["Properties"]
    assert profile == {"Roles": [{"Ref": names.BATCH_INSTANCE_ROLE_ID}]}
    cfn = transform(path.read_text())
    assert role_statements(cfn, names.BATCH_INSTANCE_ROLE_ID) == []  # AWS's managed policy for the ECS agent only
    infer = job(path, "gpu", "infer")
    assert infer["PlatformCapabilities"] == ["EC2"]
    requirements = {r["Type"]: r["Value"] for r in infer["ContainerProperties"]["ResourceRequirements"]}
    assert requirements == {"VCPU": "4", "MEMORY": "16384", "GPU": "1"}
    # Fargate's properties only on Fargate jobs.
    for key in ("NetworkConfiguration", "FargatePlatformConfiguration", "RuntimePlatform"):
        assert key not in infer["ContainerProperties"]
    assert job(path, "gpu", "total")["Timeout"] == {"AttemptDurationSeconds": 600}
    substitutions = found[names.state_machine_id("gpu")]["Properties"]["DefinitionSubstitutions"]
    assert substitutions[names.job_queue_substitution("gpu", "infer")] == {"Ref": names.JOB_QUEUE_IDS["ec2"]}


def test_an_existing_queue_replaces_the_stacks_compute_environment_and_queue(apps: dict[str, Path]) -> None:
    path = apps["queue"]
    found = resources(path)
    kinds = {r["Type"] for r in found.values()}
    assert "AWS::Batch::ComputeEnvironment" not in kinds and "AWS::Batch::JobQueue" not in kinds
    assert names.BATCH_SUBNETS_PARAMETER not in load(path.read_text())["Parameters"]
    arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/analytics"
    substitutions = found[names.state_machine_id("batch_only")]["Properties"]["DefinitionSubstitutions"]
    assert resolved(path, substitutions[names.job_queue_substitution("batch_only", "cube")]) == arn
    cfn = transform(path.read_text())
    role_id = cfn["Resources"][names.state_machine_id("batch_only")]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    submit = next(s for s in role_statements(cfn, role_id) if s["Sid"] == "SubmitOwnJobs")
    assert submit["Resource"][-1] == arn


ARM_ON_EC2 = """
from lokki_sam import flow, step

@step(compute="batch", platform="ec2", architecture="arm64")
def tally(n: int = 2) -> int:
    return n

@flow
def arm(n: int = 2):
    return tally(n=n)
"""


def test_ec2_steps_of_two_architectures_are_refused(tmp_path: Path) -> None:
    """One EC2 compute environment serves the stack's EC2 steps: its instances have one architecture."""
    from lokki_sam.loader import load_flows

    (tmp_path / "arm_flow.py").write_text(ARM_ON_EC2)
    (arm,) = load_flows(str(tmp_path / "arm_flow.py"))
    settings = model.Settings(batch=load_config(tmp_path).values, root=tmp_path)
    with pytest.raises(LokkiError, match=r"share one compute environment.*arm64 and x86_64"):
        model.build([arm.graph, batch_gpu.gpu.graph], settings)


def test_the_image_tag_follows_what_the_image_is_built_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same project gives the same tag (generate --check passes); a changed file of CodeUri, or a
    Dockerfile the user made theirs, a new one; files outside the build context do not count."""
    template = make_app(tmp_path, [FLOWS / "batch_mixed.py"], refs=[f"{tmp_path}/src/batch_mixed.py:batch_only"])
    monkeypatch.chdir(tmp_path)  # generate reads the project's settings where it runs, as in a shell

    def tags() -> set[str]:
        return set(re.findall(r"/\$\{Repository\}:([0-9a-f]{10}-[0-9a-f]{16})", template.read_text()))

    first = tags()
    assert len(first) == 1  # four steps of one requirement set and architecture: one image
    code, out, err = generate_in_process("batch_mixed", "--check", "--template", str(template), "--code-uri", "src")
    assert code == 0, out + err
    (tmp_path / "notes.txt").write_text("outside the code folder")
    assert regenerate(template) == first
    (tmp_path / "src" / "data.csv").write_text("1,2\n")
    changed = regenerate(template)
    assert changed != first and len(changed) == 1
    dockerfile = next((tmp_path / "images").glob("*/Dockerfile"))
    dockerfile.write_text("\n".join(dockerfile.read_text().splitlines()[1:]) + "\nENV MINE=1\n")  # the user's now
    assert regenerate(template) not in (first, changed)


def regenerate(template: Path) -> set[str]:
    code, out, err = generate_in_process("batch_mixed", "--template", str(template), "--code-uri", "src")
    assert code == 0, out + err
    return set(re.findall(r"/\$\{Repository\}:([0-9a-f]{10}-[0-9a-f]{16})", template.read_text()))


def test_your_additions_to_batch_resources_survive_regeneration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the properties lokki-sam sets are its own: a job definition's ephemeral storage and a
    compute environment's tags stay, an edited owned value (MaxvCpus) is set again."""
    template = make_app(tmp_path, [FLOWS / "batch_mixed.py"], **NETWORK)
    monkeypatch.chdir(tmp_path)  # generate reads the project's settings where it runs, as in a shell
    text = template.read_text()
    text = text.replace(
        "        Command:\n          - python3\n",
        "        EphemeralStorage:\n          SizeInGiB: 100\n        Command:\n          - python3\n",
        1,
    )
    text = text.replace("        MaxvCpus: 256\n", "        MaxvCpus: 8\n        Tags:\n          team: data\n", 1)
    template.write_text(text)
    code, out, err = generate_in_process("batch_mixed", "--template", str(template), "--code-uri", "src")
    assert code == 0, out + err
    found = load(template.read_text())["Resources"]
    definition = next(r for r in found.values() if r["Type"] == "AWS::Batch::JobDefinition")
    assert definition["Properties"]["ContainerProperties"]["EphemeralStorage"] == {"SizeInGiB": 100}
    compute = found[names.COMPUTE_ENVIRONMENT_IDS["fargate"]]["Properties"]["ComputeResources"]
    assert compute["MaxvCpus"] == 256 and compute["Tags"] == {"team": "data"}


def test_the_serverless_target_writes_the_same_batch_resources(tmp_path: Path) -> None:
    """serverless.yml's `resources:` hold the same Batch resources as template.yaml: the compute
    environment's network from lokki.toml (the framework passes no template parameters), the bucket
    and prefix in the framework's own spelling (compared once packaged: test_serverless_package.py)."""
    sam = load(make_app(tmp_path / "sam", [FLOWS / "batch_mixed.py"], **NETWORK).read_text())["Resources"]
    forget_module("batch_mixed")
    path = make_app(tmp_path / "sls", [FLOWS / "batch_mixed.py"], target="serverless", **NETWORK)
    ours = load(path.read_text())["resources"]["Resources"]
    batch_kinds = ("AWS::Batch::", "AWS::ECR::", "AWS::IAM::InstanceProfile")
    in_sam = {k: v for k, v in sam.items() if v["Type"].startswith(batch_kinds)}
    assert in_sam and {k for k, v in ours.items() if v["Type"].startswith(batch_kinds)} == set(in_sam)
    network = {
        json.dumps({"Ref": names.BATCH_SUBNETS_PARAMETER}): json.dumps([NETWORK["batch_subnets"]]),
        json.dumps({"Ref": names.BATCH_SECURITY_GROUPS_PARAMETER}): json.dumps([NETWORK["batch_security_groups"]]),
    }
    for key, resource in in_sam.items():
        text = json.dumps(resource)
        for parameter, value in network.items():
            text = text.replace(parameter, value)
        expected, got = json.loads(text), json.loads(json.dumps(ours[key]))
        for found in (expected, got):  # the bucket and prefix: each target's spelling
            environment = found["Properties"].get("ContainerProperties", {}).pop("Environment", [])
            found["environment"] = [e["Name"] for e in environment]
        assert got == expected, key


@pytest.mark.external
def test_sam_validate_lint_accepts_the_templates(apps: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    sam = shutil.which("sam", path=str(Path(sys.executable).parent))
    assert sam, "the SAM CLI comes with the dev extra"
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path)}
    env |= {"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": REGION}
    for name, path in apps.items():
        done = subprocess.run([sam, "validate", "--lint"], cwd=path.parent, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and "is a valid SAM Template" in done.stdout + done.stderr, (name, done)
