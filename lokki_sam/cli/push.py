"""`lokki-sam push`: build the Batch steps' images and push them to the deployed stack's ECR repository."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from lokki_sam.cli.options import aws_options, pop_aws
from lokki_sam.cli.state import CliState, handle_errors, pass_state


@click.command("push")
@click.option("--template", "template", metavar="FILE", help="The generated file [default: as `generate` writes it].")
@click.option("--target", type=click.Choice(["sam", "serverless"]), help="[default: config target, else sam].")
@click.option("--code-uri", metavar="DIR", help="The --code-uri `generate` was given [default: config code_uri].")
@click.option("--dry-run", is_flag=True, help="Say what would be built and pushed; run no docker command.")
@aws_options
@pass_state
@handle_errors
def command(
    state: CliState, /, template: str | None, target: str | None, code_uri: str | None, dry_run: bool, **kwargs: Any
) -> None:
    """Build the images of the Batch steps and push them to the stack's ECR repository.

    Run it after `sam deploy` (the first deploy creates the repository), or before a later deploy.
    Images already in the repository are not built again; the local cloud needs none (it builds
    them from this folder itself).
    """
    from lokki_sam.cloud import push
    from lokki_sam.cloud.stack import deployment
    from lokki_sam.compile.images import docker_problem
    from lokki_sam.config import generated_file
    from lokki_sam.emulator.engines import ENGINES
    from lokki_sam.emulator.state import load
    from lokki_sam.errors import LokkiError

    config = state.config
    target = target or str(config.get("target", "sam"))
    path = Path(template or generated_file(config, target))
    aws = pop_aws(kwargs)
    local = [r for r in (load(name) for name in ENGINES) if r is not None and r.endpoint == aws.get("endpoint_url")]
    if local:
        click.echo(
            f"{aws['endpoint_url']} is lokki-sam's local cloud ({local[0].engine}): it runs the Batch jobs from "
            "this folder's images itself (docs/deploy.md), so there is nothing to push",
            err=True,
        )
        return
    images = push.project_images(path, config, target, code_uri)
    if not images:
        click.echo(f"{path} holds no Batch steps: no image to push", err=True)
        return
    dep = deployment(config, aws)
    registry, repository = push.stack_registry(dep)
    there = push.pushed_tags(dep, repository, [image.tag for image in images])
    if dry_run:
        for image in images:
            what = "there already" if image.tag in there else "to build and push"
            click.echo(f"{registry.repository_uri}:{image.tag}: {what} ({', '.join(image.steps)})")
        return
    problem = docker_problem(os.environ) if len(there) < len(images) else None
    if problem:
        raise LokkiError(f"{problem}: pushing images needs Docker", hint="start Docker, or set DOCKER_HOST")
    pushed = push.push_images(images, registry, path.parent, there, lambda line: click.echo(line, err=True))
    for name in pushed:
        click.echo(f"pushed {name}")
    stale = push.stale_deploy(images, push.deployed_tags(dep))
    if stale:
        click.echo(
            f"note: the deployed stack names images this folder no longer builds ({'; '.join(stale)}): "
            "run `sam build` and `sam deploy` to deploy the images just pushed",
            err=True,
        )
