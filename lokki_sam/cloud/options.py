"""Options shared by `invoke`, `runs` and `result`: which stack, region, profile and endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from lokki_sam.cloud.stack import Deployment, open_deployment, resolve_target
from lokki_sam.config import Config


def aws_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--stack-name", help="Deployed stack [default: samconfig.toml, then lokki.toml stack_name]."),
        click.option("--config-env", default="default", show_default=True, help="samconfig.toml environment to read."),
        click.option(
            "--endpoint-url",
            envvar="AWS_ENDPOINT_URL",
            help="AWS endpoint, e.g. a local cloud's http://127.0.0.1:4566 [env: AWS_ENDPOINT_URL].",
        ),
        click.option("--region", help="AWS region [default: samconfig.toml, lokki.toml, AWS_REGION]."),
        click.option("--profile", help="AWS profile [default: samconfig.toml, AWS_PROFILE]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def deployment(config: Config, aws: dict[str, Any]) -> Deployment:
    """Open the stack named by the options in `aws` (the keyword arguments of aws_options)."""
    target = resolve_target(
        config,
        stack_name=aws["stack_name"],
        region=aws["region"],
        profile=aws["profile"],
        endpoint_url=aws["endpoint_url"],
        config_env=aws["config_env"],
    )
    return open_deployment(target)


def pop_aws(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs.pop(key) for key in ("stack_name", "config_env", "endpoint_url", "region", "profile")}
