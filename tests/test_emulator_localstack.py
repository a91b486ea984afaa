"""lokki-sam's host executor inside real LocalStack (localstack-core 4.14.0, the pinned version):
functions created through LocalStack's Lambda API run as host subprocesses of their runtime's
Python, with layers, AWS's environment, boto3, real exception classes, timeouts, CloudWatch logs
and a bound on idle workers. LocalStack starts once for the module (`lokki_sam.emulator.control`,
as `lokki-sam emulator start` does) and its stop must leave no worker behind.

Also pinned down here: the Step Functions gaps of LocalStack that docs/deploy.md lists.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lokki_sam.emulator import control, process
from lokki_sam.emulator.state import Record

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
ROLE = "arn:aws:iam::000000000000:role/lambda"
WORKERS = 2
MAP_CONCURRENCY = 6
APP = """
import os, sys, time

def info(event, context):
    import boto3
    import shared, only_a
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="made-by-a-function")
    names = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "AWS_ENDPOINT_URL", "LAMBDA_TASK_ROOT", "_HANDLER",
             "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_EXECUTION_ENV", "MY_SETTING")
    return {
        "env": {n: os.environ.get(n) for n in names},
        "cwd": os.getcwd(),
        "python": "%d.%d" % sys.version_info[:2],
        "boto3": boto3.__version__,
        "layers": [shared.WHO, only_a.WHO],
        "credentials": bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")),
        "internal": sorted(k for k in os.environ if k.startswith(("LOCALSTACK_RUNTIME", "_LOKKI_"))),
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
        "remaining": context.get_remaining_time_in_millis(),
    }

def fail(event, context):
    print("about to fail")
    raise ValueError("bad value " + str(event.get("n")))

def sleepy(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return os.getpid()

def talk(event, context):
    print("log line", event["word"])
    return "ok"

def double(event, context):
    return {"twice": event * 2, "pid": os.getpid()}
"""


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Record]:
    state = tmp_path_factory.mktemp("localstack-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOKKI_SAM_STATE", str(state))
        patch.setenv("LOKKI_EMULATOR_WORKERS", str(WORKERS))
        patch.setenv("LOKKI_EMULATOR_MAP_CONCURRENCY", str(MAP_CONCURRENCY))
        started = control.start("localstack", process.free_port(), None, progress=lambda _: None)
        record = started.record
        try:
            yield record
        finally:
            control.stop("localstack")
        # Stopping ends LocalStack and every worker of its process group, and drops their files.
        assert process.group_members(record.pid) == []
        assert not (Path(record.workdir) / "tmp").exists()


def client(cloud: Record, service: str) -> Any:
    return boto3.client(service, endpoint_url=cloud.endpoint, region_name="us-east-1")


def create(cloud: Record, name: str, handler: str, **extra: Any) -> None:
    lam = client(cloud, "lambda")
    extra.setdefault("Runtime", RUNTIME)
    lam.create_function(
        FunctionName=name, Handler=handler, Role=ROLE, Code={"ZipFile": zipped({"app.py": APP})}, **extra
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)


def invoke(cloud: Record, name: str, event: Any) -> tuple[str | None, Any]:
    response = client(cloud, "lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def log_lines(cloud: Record, group: str, needle: str, wait: float = 10) -> list[str]:
    logs = client(cloud, "logs")
    deadline = time.monotonic() + wait
    while True:
        try:
            lines = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
        except logs.exceptions.ResourceNotFoundException:
            lines = []
        if any(needle in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def workers(cloud: Record) -> list[int]:
    """Worker processes (bootstrap.py) in LocalStack's process group."""
    found = []
    for pid in process.group_members(cloud.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"bootstrap.py" in command:
            found.append(pid)
    return found


def test_a_function_runs_under_its_runtimes_python_with_layers_boto3_and_awss_environment(cloud: Record) -> None:
    lam = client(cloud, "lambda")
    arns = []
    for name, files in [
        ("layer-a", {"python/shared.py": "WHO = 'a'\n", "python/only_a.py": "WHO = 'only a'\n"}),
        ("layer-b", {"python/shared.py": "WHO = 'b'\n"}),  # the later layer wins, as in AWS's /opt
    ]:
        arns.append(lam.publish_layer_version(LayerName=name, Content={"ZipFile": zipped(files)})["LayerVersionArn"])
    create(cloud, "info", "app.info", Layers=arns, Timeout=30, Environment={"Variables": {"MY_SETTING": "mine"}})
    error, result = invoke(cloud, "info", {})
    assert error is None, result
    env = result["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "info" and env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL"] == cloud.endpoint  # functions reach LocalStack on 127.0.0.1
    assert env["_HANDLER"] == "app.info" and env["MY_SETTING"] == "mine"
    assert env["LAMBDA_TASK_ROOT"] == result["cwd"] and Path(result["cwd"], "app.py").is_file()
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/info"
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{RUNTIME}"
    assert result["python"] == RUNTIME.removeprefix("python")
    assert result["boto3"] == "1.42.54"
    assert result["layers"] == ["b", "only a"]
    assert result["credentials"] and result["internal"] == []
    assert "made-by-a-function" in result["buckets"]  # boto3 in the function talks to this LocalStack
    assert 0 < result["remaining"] <= 30_000


def test_an_exception_fails_the_invocation_with_its_class_and_its_log_names_it(cloud: Record) -> None:
    create(cloud, "fail", "app.fail", LoggingConfig={"LogFormat": "Text", "LogGroup": "/custom/fail"})
    error, payload = invoke(cloud, "fail", {"n": 7})
    assert error == "Unhandled"
    assert (payload["errorType"], payload["errorMessage"]) == ("ValueError", "bad value 7")
    # LocalStack writes /aws/lambda/<function>; the executor also writes the configured group (as AWS does).
    for group in ("/aws/lambda/fail", "/custom/fail"):
        lines = log_lines(cloud, group, "REPORT RequestId")
        text = "".join(lines)
        assert "about to fail" in text and "[ERROR] ValueError: bad value 7" in text, (group, lines)
        assert lines[0].startswith("START RequestId: ") and any(line.startswith("END RequestId: ") for line in lines)
        assert "Init Duration: " in text


def test_a_timeout_kills_the_worker_and_the_next_invocation_starts_a_new_one(cloud: Record) -> None:
    create(cloud, "sleepy", "app.sleepy", Timeout=1)
    error, first = invoke(cloud, "sleepy", {})
    assert error is None and isinstance(first, int)
    began = time.monotonic()
    error, payload = invoke(cloud, "sleepy", {"sleep": 30})
    assert time.monotonic() - began < 10
    assert error == "Unhandled" and payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert process.started_at(first) is None  # the worker that ran over its time is gone
    error, second = invoke(cloud, "sleepy", {})
    assert error is None and second != first
    assert "Task timed out after 1.00 seconds" in "".join(log_lines(cloud, "/aws/lambda/sleepy", "timed out"))


def test_a_handler_that_cannot_load_is_reported_and_logged(cloud: Record) -> None:
    create(cloud, "broken", "missing_module.handler")
    error, payload = invoke(cloud, "broken", {})
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'missing_module'" in payload["errorMessage"]
    lines = log_lines(cloud, "/aws/lambda/broken", "ImportModuleError")
    assert any("[ERROR] Runtime.ImportModuleError" in line for line in lines), lines


def test_a_runtime_other_than_python_is_refused_with_a_clear_error(cloud: Record) -> None:
    create(cloud, "node", "index.handler", Runtime="nodejs20.x")
    error, payload = invoke(cloud, "node", {})
    assert error == "Unhandled" and payload["errorType"] == "Runtime.InvalidRuntime"
    assert "runtime nodejs20.x are not supported" in payload["errorMessage"]


def test_idle_workers_are_bounded_and_an_ended_one_starts_again(cloud: Record) -> None:
    names = [f"talk-{i}" for i in range(WORKERS + 2)]
    for name in names:
        create(cloud, name, "app.talk")
        assert invoke(cloud, name, {"word": name}) == (None, "ok")
    assert len(workers(cloud)) <= WORKERS
    assert invoke(cloud, names[0], {"word": "again"}) == (None, "ok")  # its worker was ended: a cold start
    assert len(workers(cloud)) <= WORKERS
    assert "log line again" in "".join(log_lines(cloud, "/aws/lambda/talk-0", "log line again"))


def test_concurrent_invocations_share_a_bounded_pool_of_warm_workers(cloud: Record) -> None:
    """LocalStack makes an execution environment per concurrent invocation; the executor runs
    them all on at most LOKKI_EMULATOR_WORKERS processes, reused warm."""
    from concurrent.futures import ThreadPoolExecutor

    create(cloud, "pooled", "app.double")
    with ThreadPoolExecutor(12) as threads:
        answers = list(threads.map(lambda n: invoke(cloud, "pooled", n), range(24)))
    assert [(error, payload["twice"]) for error, payload in answers] == [(None, 2 * n) for n in range(24)]
    assert len({payload["pid"] for _, payload in answers}) <= WORKERS
    assert len(workers(cloud)) <= WORKERS


def test_a_distributed_map_of_600_items_without_max_concurrency_loses_none(cloud: Record) -> None:
    """LocalStack starts every item of such a map at once: on a small machine its Step Functions
    then fails items with `States.Runtime: Connect timeout` (and lets the map succeed). Locally
    at most LOKKI_EMULATOR_MAP_CONCURRENCY children run at once, and every item completes."""
    create(cloud, "doubler", "app.double", Timeout=60)
    arn = client(cloud, "lambda").get_function(FunctionName="doubler")["Configuration"]["FunctionArn"]
    items = list(range(600))
    definition = {
        "StartAt": "Items",
        "States": {
            "Items": {"Type": "Pass", "Result": items, "Next": "Map"},
            "Map": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Double",
                    "States": {
                        "Double": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": arn, "Payload.$": "$"},
                            "OutputPath": "$.Payload.twice",
                            "End": True,
                        }
                    },
                },
                "End": True,
            },
        },
    }
    execution = run(cloud, state_machine(cloud, "six-hundred", definition), timeout=600)
    assert execution["status"] == "SUCCEEDED"
    sfn = client(cloud, "stepfunctions")
    (map_run,) = sfn.list_map_runs(executionArn=execution["executionArn"])["mapRuns"]
    described = sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])
    assert described["itemCounts"]["failed"] == 0 and described["itemCounts"]["succeeded"] == len(items)
    assert described["maxConcurrency"] == MAP_CONCURRENCY  # the local bound, as DescribeMapRun reports it
    assert json.loads(execution["output"]) == [2 * n for n in items]


# ------------------------------------------------------------- Step Functions gaps (docs/deploy.md)


def state_machine(cloud: Record, name: str, definition: dict[str, Any]) -> str:
    arn: str = client(cloud, "stepfunctions").create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    return arn


def run(cloud: Record, arn: str, timeout: float = 60) -> dict[str, Any]:
    sfn = client(cloud, "stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return dict(described)


def failing_item_map(mode: str) -> dict[str, Any]:
    body = {
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Bad"}],
                "Default": "Good",
            },
            "Bad": {"Type": "Fail", "Error": "ValueError", "Cause": "item 2"},
            "Good": {"Type": "Succeed"},
        },
    }
    processor: dict[str, Any] = {"ProcessorConfig": {"Mode": mode}} | body
    if mode == "DISTRIBUTED":
        processor["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    return {
        "StartAt": "Items",
        "States": {
            "Items": {"Type": "Pass", "Result": [0, 1, 2, 3], "Next": "Map"},
            "Map": {"Type": "Map", "ItemProcessor": processor, "End": True},
        },
    }


def test_localstack_ignores_a_failed_item_of_a_distributed_map_but_not_of_an_inline_one(cloud: Record) -> None:
    """Why lokki-sam's agg step and result read check for missing item outputs (MapIncomplete)."""
    distributed = run(cloud, state_machine(cloud, "distributed-map", failing_item_map("DISTRIBUTED")))
    assert distributed["status"] == "SUCCEEDED"  # AWS: FAILED (States.ExceedToleratedFailureThreshold)
    inline = run(cloud, state_machine(cloud, "inline-map", failing_item_map("INLINE")))
    assert inline["status"] == "FAILED" and inline.get("error") == "ValueError"


def test_localstack_rejects_an_item_batcher(cloud: Record) -> None:
    """Why the journey's LocalStack app has no batched flow."""
    definition = failing_item_map("DISTRIBUTED")
    definition["States"]["Map"]["ItemBatcher"] = {"MaxItemsPerBatch": 2}
    sfn = client(cloud, "stepfunctions")
    with pytest.raises(sfn.exceptions.InvalidDefinition, match="ItemBatcher"):
        state_machine(cloud, "batched-map", definition)


def test_the_emulator_venv_python_is_313(cloud: Record) -> None:
    assert cloud.python == "3.13" and os.access(Path(cloud.venv) / "bin" / "python", os.X_OK)
