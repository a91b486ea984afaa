"""`sam build` + `sam local invoke` proven on a real Docker daemon, offline (issue 11).

The daemon, the Lambda base image stand-in and the SAM host-network shim come from tests/support/
(docker_daemon.py, lambda_image.py, sam_local.py; docs/docker.md). One tiny SAM app, built once:
zip functions (echo, write to S3, raise) and an image function. The S3 emulator is a moto server on
127.0.0.1, reached from the container through host networking. `pytest tests/test_docker_infra.py -s`
prints the timings.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.docker_daemon import DockerDaemon, bridge_networks
from tests.support.lambda_image import PYTHON, LambdaImages, host_architecture
from tests.support.moto_server import moto_endpoint
from tests.support.sam_local import InvokeResult, run_sam, sam_local_invoke, sam_start_lambda

pytest_plugins = ["tests.support.docker_fixtures"]
pytestmark = pytest.mark.docker

ARCH = host_architecture()

TEMPLATE = f"""\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 30
    Architectures: [{ARCH}]
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.echo
      Runtime: python{PYTHON}
  PutFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.put
      Runtime: python{PYTHON}
      Environment:
        Variables:  # declared, so that --env-vars can override them
          S3_ENDPOINT: "http://127.0.0.1:9"
          BUCKET: unset
  FailFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.fail
      Runtime: python{PYTHON}
  ImageFunction:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
    Metadata:
      Dockerfile: Dockerfile
      DockerContext: ./image
      DockerTag: python{PYTHON}-v1
"""

APP = """\
import json
import os
import platform
import sys


class StepFailed(Exception):
    pass


def echo(event, context):
    return {
        "echo": event,
        "python": platform.python_version(),
        "function": context.function_name,
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "handler": os.environ.get("_HANDLER"),
        "module": __file__,
        "endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
    }


def put(event, context):
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
    s3.put_object(Bucket=os.environ["BUCKET"], Key=event["key"], Body=json.dumps(event["value"]).encode())
    return {"written": f"s3://{os.environ['BUCKET']}/{event['key']}", "boto3": boto3.__version__}


def fail(event, context):
    raise StepFailed(f"cannot process item {event['item']}")
"""

IMAGE_APP = """\
import sys


def handler(event, context):
    return {"image": True, "doubled": [2 * x for x in event["numbers"]], "python": sys.version.split()[0]}
"""

DOCKERFILE = f"""\
FROM public.ecr.aws/lambda/python:{PYTHON}
COPY image_app.py ${{LAMBDA_TASK_ROOT}}/
CMD ["image_app.handler"]
"""

TIMINGS: dict[str, float] = {}


def write_app(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "image").mkdir()
    (root / "template.yaml").write_text(TEMPLATE)
    (root / "src" / "app.py").write_text(APP)
    (root / "src" / "requirements.txt").write_text("")
    (root / "image" / "image_app.py").write_text(IMAGE_APP)
    (root / "image" / "Dockerfile").write_text(DOCKERFILE)
    return root


@pytest.fixture(scope="module")
def app(sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app, built once by the real `sam build` (the image function with docker build, on the daemon)."""
    root = write_app(tmp_path_factory.mktemp("app"))
    began = time.perf_counter()
    proc = run_sam(["build"], cwd=root, env=sam_env)
    TIMINGS["sam build (3 zip functions, 1 image)"] = time.perf_counter() - began
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / ".aws-sam" / "build" / "EchoFunction" / "app.py").exists()
    return root


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def invoke(function: str, app: Path, env: dict[str, str], label: str, **kwargs: Any) -> InvokeResult:
    result = sam_local_invoke(function, cwd=app, env=env, **kwargs)
    TIMINGS[f"sam local invoke {label}"] = result.seconds
    assert result.proc.returncode == 0, result.proc.stdout + result.proc.stderr
    assert result.payload is not None, f"no payload printed:\n{result.proc.stdout}\n{result.proc.stderr[-3000:]}"
    return result


def test_zip_function_returns_the_handlers_output(app: Path, sam_env: dict[str, str]) -> None:
    event = {"bird": "goose", "n": [1, 2, 3]}
    result = invoke("EchoFunction", app, sam_env, "zip (first: SAM builds its rapid image)", event=event)
    assert result.error_type is None, result.payload
    assert result.payload["echo"] == event
    assert result.payload["python"].startswith(f"{PYTHON}.")
    assert result.payload["function"] == "EchoFunction"
    assert result.payload["task_root"] == "/var/task"
    assert result.payload["module"] == "/var/task/app.py"  # the built code, mounted by SAM
    assert result.payload["handler"] == "app.echo"
    assert result.payload["endpoint_url"] is None  # sam_env's guard for SAM's own AWS calls stays outside
    again = invoke("EchoFunction", app, sam_env, "zip (cold container, images cached)", event={"bird": "duck"})
    assert again.payload["echo"] == {"bird": "duck"}


def test_function_reaches_the_s3_emulator_on_loopback(app: Path, sam_env: dict[str, str], moto_s3: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    bucket = f"docker-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    env_vars = {"PutFunction": {"S3_ENDPOINT": moto_s3, "BUCKET": bucket}}
    event = {"key": "runs/r1/out.json", "value": {"birds": ["goose", "duck"]}}
    result = invoke("PutFunction", app, sam_env, "zip writing to moto S3", event=event, env_vars=env_vars)
    assert result.error_type is None, result.payload
    assert result.payload["written"] == f"s3://{bucket}/runs/r1/out.json"
    assert result.payload["boto3"]  # the runtime's boto3 (in the image's /var/runtime)
    body = s3.get_object(Bucket=bucket, Key="runs/r1/out.json")["Body"].read()
    assert json.loads(body) == {"birds": ["goose", "duck"]}


def test_image_function_built_from_the_lambda_base_image(app: Path, sam_env: dict[str, str]) -> None:
    built = (app / ".aws-sam" / "build" / "template.yaml").read_text()
    assert f"imagefunction:python{PYTHON}-v1" in built  # sam build tagged the image it built
    result = invoke("ImageFunction", app, sam_env, "image function", event={"numbers": [1, 2, 21]})
    assert result.error_type is None, result.payload
    assert result.payload == {"image": True, "doubled": [2, 4, 42], "python": result.payload["python"]}
    assert result.payload["python"].startswith(f"{PYTHON}.")


def test_an_exception_comes_back_as_its_class(app: Path, sam_env: dict[str, str]) -> None:
    result = invoke("FailFunction", app, sam_env, "zip raising", event={"item": 7})
    # SAM exits 0 even so: the payload is the only sign of the failure.
    assert result.error_type == "StepFailed", result.payload
    assert result.payload["errorMessage"] == "cannot process item 7"
    assert any("raise StepFailed" in line for line in result.payload.get("stackTrace", [])), result.payload


def test_start_lambda_keeps_containers_warm(app: Path, sam_env: dict[str, str]) -> None:
    began = time.perf_counter()
    with sam_start_lambda(cwd=app, env=sam_env) as endpoint:
        TIMINGS["sam local start-lambda ready (warm containers, LAZY)"] = time.perf_counter() - began
        config = Config(retries={"max_attempts": 1}, read_timeout=60)
        client = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", config=config)
        for i in range(3):
            began = time.perf_counter()
            response = client.invoke(FunctionName="EchoFunction", Payload=json.dumps({"i": i}))
            TIMINGS[f"start-lambda invoke #{i + 1}"] = time.perf_counter() - began
            payload = json.loads(response["Payload"].read())
            assert payload["echo"] == {"i": i}, payload
        response = client.invoke(FunctionName="FailFunction", Payload=json.dumps({"item": 3}))
        payload = json.loads(response["Payload"].read())
        # The class name comes back in the payload; SAM does not set FunctionError for awslambdaric's shape.
        assert payload["errorType"] == "StepFailed", payload


def test_no_bridge_network_and_no_leftover_container(
    app: Path, docker_daemon: DockerDaemon, lambda_images: LambdaImages
) -> None:
    import docker

    assert bridge_networks(docker_daemon.host) == [] or not docker_daemon.owned
    client = docker.DockerClient(base_url=docker_daemon.host)
    try:
        tags = {tag for image in client.images.list() for tag in image.tags}
        if docker_daemon.owned:
            assert client.containers.list(all=True) == []  # SAM removed every container it ran
            assert f"public.ecr.aws/lambda/python:{PYTHON}-rapid-{ARCH}" in tags  # SAM's own, built offline
    finally:
        client.close()
    assert set(lambda_images.tags) <= tags
    print()
    for what, seconds in TIMINGS.items():
        print(f"  {what}: {seconds:.1f} s")
    for line in lambda_images.describe():
        print(f"  {line}")
