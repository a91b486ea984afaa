"""AWS Batch on lokki-sam's local cloud: real LocalStack (localstack-core 4.14.0) with lokki-sam's
plugin, started as `lokki-sam emulator start --engine localstack` starts it.

A hand-written template, deployed through LocalStack's CloudFormation, creates a compute
environment, a job queue and job definitions (lokki-sam's resource providers), a bucket and state
machines whose `batch:submitJob.sync` Tasks run the jobs as host processes: a job reading and
writing the bucket, a job exiting 3, a STANDARD Distributed Map of jobs, and the definition
`compile/asl.py` generates for a flow whose every step is a Batch job, run through
`python -m lokki_sam.batch`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import WaiterError

from lokki_sam import __version__, names
from lokki_sam.compile import asl
from lokki_sam.execution import RunContext, read_result
from lokki_sam.store import S3Store
from tests.conftest import REPO
from tests.flows import batch_mixed
from tests.support import local_batch
from tests.test_emulator_localstack import cloud  # noqa: F401  # one LocalStack for the module

pytestmark = pytest.mark.emulator

STACK = "batchcloud"
FLOW = batch_mixed.batch_only
# The job: reads in/<KEY> from the bucket, writes out/<KEY> (upper-cased, with its job id), exits EXIT.
JOB = """
import os, sys, boto3
s3 = boto3.client("s3")
key, bucket = os.environ["KEY"], os.environ["BUCKET"]
body = s3.get_object(Bucket=bucket, Key="in/" + key)["Body"].read().decode()
print("read", len(body), "bytes of", key)
s3.put_object(Bucket=bucket, Key="out/" + key, Body=(body.upper() + " " + os.environ["AWS_BATCH_JOB_ID"]).encode())
sys.exit(int(os.environ.get("EXIT", "0")))
"""
SUBMIT = "arn:aws:states:::batch:submitJob.sync"


def client(cloud: Any, service: str) -> Any:  # noqa: F811
    return local_batch.client(cloud.endpoint, service)


def job_definition(command: list[str], environment: dict[str, Any], vcpu: str = "0.25", memory: str = "512") -> Any:
    return {
        "Type": "AWS::Batch::JobDefinition",
        "Properties": {
            "Type": "container",
            "PlatformCapabilities": ["FARGATE"],
            "ContainerProperties": {
                "Image": "lokki-batch-test:latest",  # not pulled: host processes run the command
                "Command": command,
                "ResourceRequirements": [{"Type": "VCPU", "Value": vcpu}, {"Type": "MEMORY", "Value": memory}],
                "Environment": [{"Name": k, "Value": v} for k, v in environment.items()],
            },
        },
    }


def submit(overrides: list[dict[str, str]], *, end: bool = True) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": SUBMIT,
        "Parameters": {
            "JobName": "copy-job",
            "JobQueue": "${Queue}",
            "JobDefinition": "${Copy}",
            "ContainerOverrides": {"Environment": overrides},
        },
        "End": end,
    }


def state_machine(definition: dict[str, Any] | str, substitutions: dict[str, Any]) -> Any:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "DefinitionString": text,
            "DefinitionSubstitutions": substitutions,
            "RoleArn": {"Fn::GetAtt": ["StateMachineRole", "Arn"]},
        },
    }


def template() -> dict[str, Any]:
    key_and_exit = [
        {"Name": "KEY", "Value.$": "$.key"},
        {"Name": "EXIT", "Value.$": "States.Format('{}', $.exit)"},
    ]
    fan_out = {
        "StartAt": "each",
        "States": {
            "each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "copy",
                    "States": {"copy": submit(key_and_exit)},
                },
                "End": True,
            }
        },
    }
    flow_prefix = {"Fn::Sub": names.template_flow_prefix(FLOW.graph.name)}

    def flow_jobs(prefix: str, extra: dict[str, str]) -> dict[str, Any]:
        """A job definition per step, written by hand (`prefix`: a second set)."""
        return {
            prefix + names.job_definition_id(FLOW.graph.name, step.name): job_definition(
                [sys.executable, "-m", "lokki_sam.batch"],
                {
                    names.ENV_MODULE: FLOW.graph.module,
                    names.ENV_FLOW: FLOW.graph.name,
                    names.ENV_STEP: step.name,
                    names.ENV_BUCKET: {"Ref": "Bucket"},
                    names.ENV_PREFIX: flow_prefix,
                    names.ENV_VERSION: __version__,
                    "PYTHONPATH": str(REPO),  # the flow's module (an image would carry the code)
                    **extra,
                },
                vcpu="0.5",
                memory="1024",
            )
            for step in FLOW.graph.steps
        }

    def flow_substitutions(prefix: str) -> dict[str, Any]:
        found = {
            **{names.job_queue_substitution(FLOW.graph.name, step.name): {"Ref": "Queue"} for step in FLOW.graph.steps},
            names.BUCKET_SUBSTITUTION: {"Ref": "Bucket"},
            names.PREFIX_SUBSTITUTION: flow_prefix,
            **{
                names.job_definition_substitution(FLOW.graph.name, step.name): {
                    "Ref": prefix + names.job_definition_id(FLOW.graph.name, step.name)
                }
                for step in FLOW.graph.steps
            },
        }
        assert sorted(found) == asl.substitution_names(FLOW.graph)
        return found

    jobs = {**flow_jobs("", {}), **flow_jobs("Failing", {"LOKKI_TEST_FAIL_ON": "27"})}
    copy_substitutions = {"Queue": {"Ref": "Queue"}, "Copy": {"Ref": "Copy"}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Compute": {
                "Type": "AWS::Batch::ComputeEnvironment",
                "Properties": {
                    "Type": "MANAGED",
                    "ComputeResources": {
                        "Type": "FARGATE",
                        "MaxvCpus": 4,
                        "Subnets": ["subnet-0123456789abcdef0"],
                        "SecurityGroupIds": ["sg-0123456789abcdef0"],
                    },
                },
            },
            "Queue": {
                "Type": "AWS::Batch::JobQueue",
                "Properties": {
                    "Priority": 1,
                    "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": {"Ref": "Compute"}}],
                },
            },
            "Copy": job_definition(["python3", "-c", JOB], {"BUCKET": {"Ref": "Bucket"}}),
            **jobs,
            "StateMachineRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "states.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                    # What a .sync Batch Task needs: the job's calls, and the rule Step Functions
                    # manages to hear of the job's end.
                    "Policies": [
                        {
                            "PolicyName": "batch-sync",
                            "PolicyDocument": {
                                "Version": "2012-10-17",
                                "Statement": [
                                    {
                                        "Effect": "Allow",
                                        "Action": ["batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob"],
                                        "Resource": "*",
                                    },
                                    {
                                        "Effect": "Allow",
                                        "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                                        "Resource": {
                                            "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:"
                                            "${AWS::AccountId}:rule/StepFunctionsGetEventsForBatchJobsRule"
                                        },
                                    },
                                ],
                            },
                        }
                    ],
                },
            },
            "OneJob": state_machine({"StartAt": "copy", "States": {"copy": submit(key_and_exit)}}, copy_substitutions),
            "ManyJobs": state_machine(fan_out, copy_substitutions),
            "Flow": state_machine(asl.render(FLOW.graph), flow_substitutions("")),
            "FailingFlow": state_machine(asl.render(FLOW.graph), flow_substitutions("Failing")),
        },
        "Outputs": {
            name: {"Value": {"Ref": name}}
            for name in ("Bucket", "Compute", "Queue", "Copy", "OneJob", "ManyJobs", "Flow", "FailingFlow")
        },
    }


@pytest.fixture(scope="module")
def stack(cloud: Any) -> Iterator[dict[str, str]]:  # noqa: F811  # the imported fixture
    cfn = client(cloud, "cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(template()), Capabilities=["CAPABILITY_IAM"])
    try:
        cfn.get_waiter("stack_create_complete").wait(StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    except WaiterError:
        events = cfn.describe_stack_events(StackName=STACK)["StackEvents"]
        reasons = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in events
            if "FAILED" in e["ResourceStatus"]
        ]
        pytest.fail("the stack was not created:\n" + "\n".join(reasons))
    described = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    yield {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    cfn.delete_stack(StackName=STACK)
    cfn.get_waiter("stack_delete_complete").wait(StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def run(cloud: Any, machine: str, payload: dict[str, Any], name: str | None = None) -> dict[str, Any]:  # noqa: F811
    """Start an execution and wait for its end (Step Functions has no waiter to block on)."""
    sfn = client(cloud, "stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload), **({"name": name} if name else {}))[
        "executionArn"
    ]
    deadline = time.monotonic() + 120
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.2)


def failure(cloud: Any, execution: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    events = client(cloud, "stepfunctions").get_execution_history(executionArn=execution["executionArn"])["events"]
    return next(e["executionFailedEventDetails"] for e in events if e["type"] == "ExecutionFailed")


def test_cloudformation_creates_the_batch_resources(cloud: Any, stack: dict[str, str]) -> None:  # noqa: F811
    batch = client(cloud, "batch")
    (environment,) = batch.describe_compute_environments(computeEnvironments=[stack["Compute"]])["computeEnvironments"]
    assert environment["computeEnvironmentArn"] == stack["Compute"]  # Ref: the ARN, as on AWS
    assert environment["computeResources"]["type"] == "FARGATE" and environment["state"] == "ENABLED"
    (queue,) = batch.describe_job_queues(jobQueues=[stack["Queue"]])["jobQueues"]
    assert queue["jobQueueArn"] == stack["Queue"] and queue["state"] == "ENABLED"
    assert queue["computeEnvironmentOrder"] == [{"order": 1, "computeEnvironment": stack["Compute"]}]
    (definition,) = batch.describe_job_definitions(jobDefinitions=[stack["Copy"]])["jobDefinitions"]
    assert definition["jobDefinitionArn"] == stack["Copy"] and stack["Copy"].endswith(":1")
    requirements = {r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]}
    assert requirements == {"VCPU": "0.25", "MEMORY": "512"} and definition["platformCapabilities"] == ["FARGATE"]


def test_a_sync_batch_task_runs_a_job_that_reads_and_writes_s3(cloud: Any, stack: dict[str, str]) -> None:  # noqa: F811
    s3 = client(cloud, "s3")
    s3.put_object(Bucket=stack["Bucket"], Key="in/a.txt", Body=b"hello")
    execution = run(cloud, stack["OneJob"], {"key": "a.txt", "exit": 0})
    assert execution["status"] == "SUCCEEDED", execution
    # A .sync Task's result: the job as DescribeJobs shows it, in Step Functions' PascalCase.
    job = json.loads(execution["output"])
    assert job["Status"] == "SUCCEEDED" and job["Container"]["ExitCode"] == 0
    written = s3.get_object(Bucket=stack["Bucket"], Key="out/a.txt")["Body"].read().decode()
    assert written == f"HELLO {job['JobId']}"
    environment = [(e["Name"], e["Value"]) for e in job["Container"]["Environment"]]
    assert ("KEY", "a.txt") in environment and ("BUCKET", stack["Bucket"]) in environment
    assert [value for name, value in environment if name == "AWS_BATCH_JOB_ID"] == [job["JobId"]]
    events = client(cloud, "logs").get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["Container"]["LogStreamName"]
    )
    assert [e["message"] for e in events["events"]] == ["read 5 bytes of a.txt"]


def test_a_job_exiting_non_zero_fails_the_task_with_its_exit_code(cloud: Any, stack: dict[str, str]) -> None:  # noqa: F811
    client(cloud, "s3").put_object(Bucket=stack["Bucket"], Key="in/b.txt", Body=b"bye")
    execution = run(cloud, stack["OneJob"], {"key": "b.txt", "exit": 3})
    assert execution["status"] == "FAILED"
    details = failure(cloud, execution)
    assert details["error"] == "States.TaskFailed"
    job = json.loads(details["cause"])
    assert job["Status"] == "FAILED" and job["Container"]["ExitCode"] == 3
    assert job["StatusReason"] == "Essential container in task exited"


def test_a_distributed_map_of_batch_jobs(cloud: Any, stack: dict[str, str]) -> None:  # noqa: F811
    s3 = client(cloud, "s3")
    keys = [f"m{i}.txt" for i in range(4)]
    for key in keys:
        s3.put_object(Bucket=stack["Bucket"], Key=f"in/{key}", Body=key.encode())
    execution = run(cloud, stack["ManyJobs"], {"items": [{"key": k, "exit": 0} for k in keys]})
    assert execution["status"] == "SUCCEEDED", execution
    written = [s3.get_object(Bucket=stack["Bucket"], Key=f"out/{k}")["Body"].read().decode() for k in keys]
    assert [w.split()[0] for w in written] == [k.upper() for k in keys]
    assert len({w.split()[1] for w in written}) == 4  # one job each


def test_a_generated_definition_runs_a_flow_of_batch_jobs_through_the_entry_point(
    cloud: Any,  # noqa: F811
    stack: dict[str, str],
) -> None:
    """The state machine `compile/asl.py` writes, with job definitions written by hand (the generated
    ones: test_batch_journey.py): a Batch map source (its manifest read back from S3), map batches of
    two items (one job per batch), and a Batch aggregation; the result is the flow's, in the stack's store."""
    params = {"n": 5, "offset": 2, "label": "total"}
    execution = run(cloud, stack["Flow"], params, name="run-1")
    assert execution["status"] == "SUCCEEDED", execution
    store = S3Store(stack["Bucket"], names.flow_prefix(STACK, FLOW.graph.name), client(cloud, "s3"))
    result = read_result(RunContext(FLOW.graph, store, "run-1", params))
    assert result == f"total={sum(x**3 + 2 for x in range(5))}"


def test_a_failing_batch_item_fails_the_generated_flow_with_its_exit_code_and_traceback(
    cloud: Any,  # noqa: F811
    stack: dict[str, str],
) -> None:
    """Item 3's shift job (its input: 3 cubed) exits 1. LocalStack lets the Distributed Map succeed
    with a failed item (docs/deploy.md), so the run fails at the aggregation, whose job refuses
    the incomplete map; the failed job's log stream holds the user's traceback."""
    execution = run(cloud, stack["FailingFlow"], {"n": 5}, name="run-2")
    assert execution["status"] == "FAILED"
    details = failure(cloud, execution)
    assert details["error"] == "States.TaskFailed"
    job = json.loads(details["cause"])
    assert job["JobName"] == "batch_only-total" and job["Container"]["ExitCode"] == 1
    logs = client(cloud, "logs")
    streams = logs.describe_log_streams(logGroupName="/aws/batch/job")["logStreams"]
    texts = [
        "\n".join(
            e["message"]
            for e in logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=st["logStreamName"])["events"]
        )
        for st in streams
    ]
    # The job's own stream has the traceback (the aggregation's names the failure, without it).
    failed = [t for t in texts if "ValueError: 27 is not allowed" in t and "Traceback (most recent call last):" in t]
    assert len(failed) == 1 and "batch_mixed.py" in failed[0] and "Traceback (most recent call last):" in failed[0]
    assert any(
        "map 'map-cube' is incomplete: 1 of 5 item(s) have no output of step 'shift' (items 3)" in t for t in texts
    )


def test_an_updated_job_definition_is_a_new_revision(cloud: Any, stack: dict[str, str]) -> None:  # noqa: F811
    """Run last: it changes the module's stack (its teardown deletes every resource, the providers' delete)."""
    cfn = client(cloud, "cloudformation")
    body = template()
    body["Resources"]["Copy"]["Properties"]["ContainerProperties"]["ResourceRequirements"][1]["Value"] = "1024"
    cfn.update_stack(StackName=STACK, TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"])
    cfn.get_waiter("stack_update_complete").wait(StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]}
    assert outputs["Copy"] == stack["Copy"].removesuffix(":1") + ":2"
    batch = client(cloud, "batch")
    (old,) = batch.describe_job_definitions(jobDefinitions=[stack["Copy"]])["jobDefinitions"]
    (new,) = batch.describe_job_definitions(jobDefinitions=[outputs["Copy"]])["jobDefinitions"]
    assert (old["status"], new["status"]) == ("INACTIVE", "ACTIVE")
    assert {r["type"]: r["value"] for r in new["containerProperties"]["resourceRequirements"]}["MEMORY"] == "1024"
