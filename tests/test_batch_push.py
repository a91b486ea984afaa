"""`lokki-sam push`: which images it builds (the generated job definitions' tags), where it pushes them
(the stack's ECR repository), what it skips (tags already there) and what it says about an older
deploy; then a real build and push with Docker to a real registry.

The ECR and CloudFormation side runs against moto (in-process, its ECR and Batch backends). ECR's
registry itself cannot run here, so the real push goes to the distribution registry on 127.0.0.1
(tests/support/registry.py), given as the repository the way ECR's URI would be.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from lokki_sam import names
from lokki_sam.cli import cli
from lokki_sam.cloud import push
from lokki_sam.config import load_config
from lokki_sam.errors import LokkiError
from tests.support.sam import REGION, REPO, forget_module, make_app, restored_sys_path

pytest_plugins = ["tests.support.docker_fixtures"]
pytestmark = pytest.mark.usefixtures("unload_modules")

STACK = "pushed"
# An image's manifest as ECR records it (moto keeps manifests only, no layers).
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The mixed flows generated for x86_64 (lokki.toml: `generate` and `push` read the same settings)."""
    (tmp_path / "lokki.toml").write_text(
        'architecture = "x86_64"\n[batch]\nsubnets = ["subnet-0123456789abcdef0"]\n'
        'security_groups = ["sg-0123456789abcdef0"]\n'
    )
    template = make_app(tmp_path, [REPO / "tests" / "flows" / "batch_mixed.py"])
    forget_module("batch_mixed")
    monkeypatch.chdir(tmp_path)
    return template.parent


def images(project: Path) -> list[push.Image]:
    with restored_sys_path():
        found = push.project_images(project / "template.yaml", load_config(project), "sam")
    forget_module("batch_mixed")
    return found


def test_the_images_are_those_the_job_definitions_name_one_per_requirement_set(project: Path) -> None:
    found = images(project)
    assert len(found) == 1  # every Batch step of the three flows: no requirements, one architecture
    (image,) = found
    text = (project / "template.yaml").read_text()
    assert text.count(f"/${{Repository}}:{image.tag}\n") == 10  # every job definition names it
    assert image.dockerfile == project / "images" / image.tag.split("-")[0] / "Dockerfile"
    assert image.architecture == "x86_64" and "batch_only.cube" in image.steps


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def deploy(tag: str) -> str:
    """A stack with the repository output and one job definition naming `tag`; the repository's name."""
    ecr = boto3.client("ecr")
    repository = ecr.create_repository(repositoryName="stack-batchimagerepository-1")["repository"]
    image = f"{repository['repositoryUri']}:{tag}"
    definition = {
        "Type": "AWS::Batch::JobDefinition",
        "Properties": {
            "Type": "container",
            "RetryStrategy": {"Attempts": 1},  # moto's CloudFormation model requires it
            "ContainerProperties": {"Image": image, "Command": ["python3"], "Vcpus": 1, "Memory": 512},
        },
    }
    template = {
        "Resources": {names.job_definition_id("batch_only", "cube"): definition},
        "Outputs": {names.BATCH_REPOSITORY_OUTPUT: {"Value": repository["repositoryName"]}},
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return str(repository["repositoryName"])


def lokki(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["push", *args, "--stack-name", STACK], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_stacks_repository_what_it_holds_and_what_the_stack_names(project: Path, aws: None) -> None:
    (image,) = images(project)
    name = deploy("0123456789-00000000000000aa")  # an older deploy
    from lokki_sam.cloud.stack import Target, open_deployment

    dep = open_deployment(Target(STACK, "--stack-name", region=REGION))
    registry, repository = push.stack_registry(dep)
    assert repository == name and registry.repository_uri.endswith(f"/{name}")
    assert registry.host == registry.repository_uri.split("/")[0] and registry.username == "AWS"
    assert push.pushed_tags(dep, repository, [image.tag]) == set()
    boto3.client("ecr").put_image(repositoryName=name, imageManifest=MANIFEST, imageTag=image.tag)
    assert push.pushed_tags(dep, repository, [image.tag, "0123456789-00000000000000bb"]) == {image.tag}
    arn = str(dep.physical_id(names.job_definition_id("batch_only", "cube")))  # ...:job-definition/NAME:1
    definition = arn.rsplit("/", 1)[1].rsplit(":", 1)[0]
    assert push.deployed_tags(dep) == {"0123456789-00000000000000aa": definition}
    assert push.stale_deploy([image], push.deployed_tags(dep)) == [f"{definition} names :0123456789-00000000000000aa"]


def test_dry_run_says_what_it_would_build_and_what_is_there(project: Path, aws: None) -> None:
    (image,) = images(project)
    name = deploy(image.tag)
    code, out, err = lokki("--dry-run")
    assert code == 0, err
    assert out.endswith(f"/{name}:{image.tag}: to build and push ({', '.join(image.steps)})\n"), out
    boto3.client("ecr").put_image(repositoryName=name, imageManifest=MANIFEST, imageTag=image.tag)
    assert ": there already (" in lokki("--dry-run")[1]
    code, out, err = lokki()  # nothing to build: no Docker needed
    assert code == 0 and out == "" and "is there already" in err, (out, err)


def test_what_push_refuses(project: Path, aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (image,) = images(project)
    boto3.client("cloudformation").create_stack(
        StackName=STACK, TemplateBody=json.dumps({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}})
    )
    code, _, err = lokki()
    assert code == 2 and f"stack '{STACK}' has no output {names.BATCH_REPOSITORY_OUTPUT}" in err, err
    boto3.client("cloudformation").delete_stack(StackName=STACK)
    deploy(image.tag)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    code, _, err = lokki()
    assert code == 2 and f"no Docker daemon answers at unix://{tmp_path}/no-daemon.sock" in err, err
    assert "pushing images needs Docker" in err


def test_the_local_cloud_needs_no_push(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Its jobs run from this folder's images: push says so, and calls nothing."""
    from lokki_sam.emulator.state import Record

    monkeypatch.setenv("LOKKI_SAM_STATE", str(tmp_path / "state"))
    record = Record("localstack", "4.14.0", 1, 0.0, 0.0, 45999, "3.13", "", "", str(tmp_path))
    record.save()
    result = CliRunner(mix_stderr=False).invoke(cli, ["push", "--endpoint-url", record.endpoint])
    assert result.exit_code == 0, result.stderr
    assert "lokki-sam's local cloud (localstack)" in result.stderr and "nothing to push" in result.stderr


def test_a_project_without_batch_steps_has_nothing_to_push(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_app(tmp_path, [REPO / "examples" / "birds.py"])
    forget_module("birds")
    monkeypatch.chdir(tmp_path)
    with restored_sys_path():
        result = CliRunner(mix_stderr=False).invoke(cli, ["push", "--stack-name", STACK])
    forget_module("birds")
    assert result.exit_code == 0 and "template.yaml holds no Batch steps: no image to push" in result.stderr


@pytest.mark.docker
def test_a_real_build_and_push_to_a_registry(
    project: Path, tmp_path: Path, docker_daemon: object, lambda_images: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """push_images builds the generated Dockerfile on the stand-in base image and pushes it under the
    tag the job definitions name; a second push finds it there and builds nothing."""
    from tests.support.registry import local_registry, tags

    for key, value in docker_daemon.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", os.environ.get("PATH", "") + ":/usr/local/bin:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # docker login writes its config there
    (image,) = images(project)
    lines: list[str] = []
    with local_registry(tmp_path / "registry") as host:
        registry = push.Registry(f"{host}/lokki-test", "AWS", "token")
        pushed = push.push_images([image], registry, project, set(), lines.append)
        assert pushed == [f"{host}/lokki-test:{image.tag}"]
        assert tags(host, "lokki-test") == [image.tag]
        assert lines == [
            f"building {host}/lokki-test:{image.tag} from {image.dockerfile} ({', '.join(image.steps)})",
            f"pushing {host}/lokki-test:{image.tag}",
        ]
        assert push.push_images([image], registry, project, {image.tag}, lines.append) == []


def test_invoke_refuses_to_start_a_run_whose_images_are_not_pushed(aws: None) -> None:
    """Every job would fail to pull its image minutes later: `invoke` says so before starting."""
    from lokki_sam.cloud.stack import Target, open_deployment
    from tests.flows import batch_mixed

    graph = batch_mixed.batch_only.graph
    name = deploy("0123456789-00000000000000aa")
    dep = open_deployment(Target(STACK, "--stack-name", region=REGION))
    with pytest.raises(push.ImagesMissing, match=rf"repository {name} does not hold yet: 0123456789-00000000000000aa"):
        push.check_images(dep, graph)
    boto3.client("ecr").put_image(repositoryName=name, imageManifest=MANIFEST, imageTag="0123456789-00000000000000aa")
    push.check_images(dep, graph)  # pushed: nothing to say
    push.check_images(dep, batch_mixed.batch_single.graph)  # no job definition of that flow deployed here


def test_a_template_stale_against_the_folder_is_refused(project: Path) -> None:
    """The code changed after `generate`: the folder would build other content than the tag the
    template (and the stack) names; pushing it under that tag would lie, so push says to generate."""
    (project / "src" / "helpers.py").write_text("X = 1\n")
    with pytest.raises(LokkiError, match="names Batch image tags this folder does not build now"):
        images(project)
