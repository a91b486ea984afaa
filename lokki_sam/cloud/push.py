"""`lokki-sam push`: build the Batch steps' images and push them to the stack's ECR repository.

SAM builds and pushes images for Lambda functions only (aws/aws-sam-cli#6109), so the images of
Batch steps are this command's: the Dockerfiles `lokki-sam generate` wrote (`images/<key>/`), with
the template's folder as context, tagged as the generated job definitions name them
(`<key>-<digest>`: what the image is built from, compile/batch_images.py). A tag already in the
repository is not built again (the tags are immutable, and the same tag is the same content).

Where it fits: `generate`, `sam build`, `sam deploy` (creates the repository and the job
definitions), `lokki-sam push`. Later changes can push before deploying, so the new job definitions
never name an image that is not there yet. The local cloud needs no push: it runs the jobs from the
project's images itself (docs/deploy.md).
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lokki_sam import names
from lokki_sam.cloud.aws import AwsError, aws_errors
from lokki_sam.cloud.stack import Deployment, StackNotFound
from lokki_sam.config import Config
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph

PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
DOCKER_TIMEOUT = 3 * 3600  # a GPU image with CUDA libraries builds and uploads for a long time


class PushError(LokkiError):
    """An image could not be built or pushed (Docker's own words follow)."""


@dataclass(frozen=True)
class Image:
    """One Batch image of the project: its tag, Dockerfile, platform and the steps it runs."""

    tag: str
    dockerfile: Path
    architecture: str
    steps: tuple[str, ...]


def project_images(template: Path, config: Config, target: str, code_uri: str | None = None) -> list[Image]:
    """The Batch images of the flows the generated file records, loaded again and tagged by what this
    folder holds now (as `generate` does; `code_uri` as given to it). An image of several steps is
    listed once. Refused when the file names other tags: it is stale (or was generated with another
    CodeUri), and pushing would put this content under a tag that names other content."""
    from lokki_sam.compile import model
    from lokki_sam.generate import model_settings, select

    selection = select((), template, config, target=target)
    if not selection.flows:
        raise LokkiError(
            f"{template} records no flows", where=str(template), hint="run `lokki-sam generate FLOW_REF` first"
        )
    uri = code_uri or str(config.get("code_uri", "src"))
    root = template.parent
    settings = model_settings(selection.flows, config, uri, root / uri, template)
    app = model.build([f.graph for f in selection.flows], settings)
    found: dict[str, Image] = {}
    for job in app.jobs:
        known = found.get(job.image_tag)
        steps = (*(known.steps if known else ()), f"{job.flow}.{job.step}")
        found[job.image_tag] = Image(job.image_tag, root / job.image.dockerfile, job.architecture, steps)
    named = set(TAG_IN_TEMPLATE.findall(template.read_text(encoding="utf-8")))
    if named != set(found):
        raise LokkiError(
            f"{template} names Batch image tags this folder does not build now "
            f"({', '.join(sorted(named - set(found))) or 'none'}; this folder: {', '.join(sorted(found)) or 'none'})",
            where=str(template),
            hint="run `lokki-sam generate` (with the --code-uri it was given) and deploy, then push; or pass "
            "push the same --code-uri",
        )
    return list(found.values())


# A job definition's image in the generated file: `...${Repository}:<key>-<digest>` (compile/batch_images.py).
TAG_IN_TEMPLATE = re.compile(r"\$\{Repository\}:([0-9a-f]{10}-[0-9a-f]{16})\b")


@dataclass(frozen=True)
class Registry:
    """Where the stack's images go: the repository's URI, and Docker's login for its registry."""

    repository_uri: str  # <account>.dkr.ecr.<region>.amazonaws.com/<name>
    username: str
    password: str

    @property
    def host(self) -> str:
        return self.repository_uri.split("/", 1)[0]


def stack_registry(dep: Deployment) -> tuple[Registry, str]:
    """The stack's repository (output `BatchImageRepositoryName`) and an ECR login for it."""
    name = dep.outputs.get(names.BATCH_REPOSITORY_OUTPUT)
    if not name:
        raise StackNotFound(
            f"stack '{dep.stack_name}' has no output {names.BATCH_REPOSITORY_OUTPUT}: it holds no Batch steps",
            hint="deploy the template `lokki-sam generate` wrote for flows with Batch steps first (`sam deploy`)",
        )
    ecr = dep.client("ecr")
    with aws_errors(f"ECR repository {name}"):
        repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        token = ecr.get_authorization_token()["authorizationData"][0]
    username, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    return Registry(str(repository["repositoryUri"]), username, password), name


def pushed_tags(dep: Deployment, repository: str, tags: Sequence[str]) -> set[str]:
    """Which of `tags` the repository already holds."""
    import botocore.exceptions

    found: set[str] = set()
    ecr = dep.client("ecr")
    for tag in tags:
        try:
            with aws_errors(f"ECR repository {repository}"):
                ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except AwsError as exc:
            if "ImageNotFound" not in str(exc):
                raise
            continue
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ImageNotFoundException":
                raise
            continue
        found.add(tag)
    return found


def deployed_tags(dep: Deployment, logical_ids: Collection[str] | None = None) -> dict[str, str]:
    """Image tag -> a job definition of the stack that names it (what the deployed jobs run); only
    the job definitions `logical_ids` when given."""
    with aws_errors(f"stack '{dep.stack_name}'"):
        pages = dep.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=dep.stack_name)
        arns = [
            str(r["PhysicalResourceId"])
            for page in pages
            for r in page.get("StackResourceSummaries", ())
            if r.get("ResourceType") == "AWS::Batch::JobDefinition"
            and r.get("PhysicalResourceId")
            and (logical_ids is None or r.get("LogicalResourceId") in logical_ids)
        ]
    out: dict[str, str] = {}
    for start in range(0, len(arns), 100):
        with aws_errors("describing the stack's job definitions"):
            found = dep.client("batch").describe_job_definitions(jobDefinitions=arns[start : start + 100])
        for definition in found.get("jobDefinitions", ()):
            image = str((definition.get("containerProperties") or {}).get("image", ""))
            if ":" in image.rsplit("/", 1)[-1]:
                out[image.rsplit(":", 1)[1]] = str(definition.get("jobDefinitionName", ""))
    return out


Docker = Callable[[Sequence[str], str | None], str]


def docker(args: Sequence[str], stdin: str | None = None) -> str:
    """Run the docker CLI; its output, or a PushError with its last lines."""
    try:
        done = subprocess.run(
            ["docker", *args], input=stdin, capture_output=True, text=True, timeout=DOCKER_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise PushError("the docker command is not on PATH", hint="install Docker: pushing images needs it") from None
    except subprocess.TimeoutExpired:
        raise PushError(f"`docker {' '.join(args[:2])}` did not finish in {DOCKER_TIMEOUT} s") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise PushError(f"`docker {' '.join(args)}` failed (exit {done.returncode}):\n{output}")
    return done.stdout


def build(image: Image, name: str, context: Path, run: Docker = docker) -> None:
    """`docker build` of `image` under `name` (for its architecture's platform)."""
    platform = PLATFORMS[image.architecture]
    run(["build", "--platform", platform, "--tag", name, "--file", str(image.dockerfile), str(context)], None)


def push_images(
    images: Sequence[Image],
    registry: Registry,
    context: Path,
    skip: set[str],
    report: Callable[[str], None],
    run: Docker = docker,
) -> list[str]:
    """Build and push each image whose tag is not in `skip`; the names pushed."""
    todo = [image for image in images if image.tag not in skip]
    for image in images:
        if image.tag in skip:
            report(f"{registry.repository_uri}:{image.tag} is there already ({', '.join(image.steps)})")
    if not todo:
        return []
    run(["login", "--username", registry.username, "--password-stdin", registry.host], registry.password)
    pushed = []
    for image in todo:
        name = f"{registry.repository_uri}:{image.tag}"
        report(f"building {name} from {image.dockerfile} ({', '.join(image.steps)})")
        build(image, name, context, run)
        report(f"pushing {name}")
        run(["push", name], None)
        pushed.append(name)
    return pushed


class ImagesMissing(LokkiError):
    """The deployed job definitions name images the stack's repository does not hold."""


def check_images(dep: Deployment, graph: FlowGraph) -> None:
    """Before a run: the images the flow's deployed job definitions name are in the stack's repository
    (else every job would fail to pull it, minutes later). Where ECR cannot be asked (the local
    cloud, which needs no push; no permission to look), the jobs say it themselves."""
    repository = dep.outputs.get(names.BATCH_REPOSITORY_OUTPUT)
    ids = {names.job_definition_id(graph.name, s.name) for s in graph.steps if s.options.on_batch}
    if not repository or not ids:
        return
    try:
        deployed = deployed_tags(dep, ids)
        missing = sorted(set(deployed) - pushed_tags(dep, repository, list(deployed)))
    except LokkiError:
        return
    if missing:
        raise ImagesMissing(
            f"the Batch steps of flow '{graph.name}' run image(s) the stack's ECR repository {repository} does "
            f"not hold yet: {', '.join(missing)}",
            where=f"stack '{dep.stack_name}'",
            hint="build and push them with `lokki-sam push` (in the generated template's folder), then invoke again",
        )


def stale_deploy(images: Sequence[Image], deployed: Mapping[str, str]) -> list[str]:
    """What the deployed job definitions name that this project does not build (an older deploy)."""
    local = {image.tag for image in images}
    return sorted(f"{definition} names :{tag}" for tag, definition in deployed.items() if tag not in local)
