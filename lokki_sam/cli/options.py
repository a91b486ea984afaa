"""Options shared by several commands."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any, TypeVar

import click

from lokki_sam.options import EXECUTORS

F = TypeVar("F", bound=Callable[..., Any])

AWS_OPTION_NAMES = ("stack_name", "config_env", "endpoint_url", "region", "profile")


def _apply(command: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        command = option(command)
    return command


def param_option(command: F) -> F:
    """`-p NAME=VALUE`, repeatable: a flow parameter."""
    return click.option(
        "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A flow parameter (repeatable)."
    )(command)


def run_options(command: F) -> F:
    """The options `lokki-sam run` and `python my_flow.py run` (main(flow)) share."""
    return _apply(
        command,
        [
            click.option(
                "--resume",
                metavar="RUN_ID",
                help="Resume a run: recompute only what did not complete or was computed from other code, "
                "parameters or inputs.",
            ),
            click.option(
                "--rerun",
                metavar="STEP",
                multiple=True,
                help="With --resume: compute STEP and every step after it again, whatever they were computed "
                "from (files, services, the clock...). Repeatable.",
            ),
            click.option("--store", metavar="DIR", help="Directory of run artifacts [default: .lokki/runs]."),
            click.option(
                "--executor",
                type=click.Choice(EXECUTORS),
                help="What runs maps' batches: threads (steps that wait), processes (Python code on every "
                "core), or auto (one thread first, then what the map needs); a map's own executor wins "
                "[default: config executor, else auto].",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="JSON log lines on stderr and a JSON result on stdout."
            ),
            click.option("-q", "--quiet", is_flag=True, help="Print only the result."),
            click.option(
                "-v", "--verbose", is_flag=True, help="Report more: each step's start, map progress per batch."
            ),
        ],
    )


def aws_options(command: F) -> F:
    """Which deployed stack, region, profile and endpoint (`invoke`, `runs`, `result`)."""
    return _apply(
        command,
        [
            click.option("--stack-name", help="Deployed stack [default: samconfig.toml, then lokki.toml stack_name]."),
            click.option(
                "--config-env", default="default", show_default=True, help="samconfig.toml environment to read."
            ),
            click.option(
                "--endpoint-url",
                envvar="AWS_ENDPOINT_URL",
                help="AWS endpoint, e.g. a local cloud's http://127.0.0.1:4566 [env: AWS_ENDPOINT_URL].",
            ),
            click.option("--region", help="AWS region [default: samconfig.toml, lokki.toml, AWS_REGION]."),
            click.option("--profile", help="AWS profile [default: samconfig.toml, AWS_PROFILE]."),
        ],
    )


def pop_aws(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the aws_options values out of a command's keyword arguments."""
    return {key: kwargs.pop(key) for key in AWS_OPTION_NAMES}


def aws_arguments(aws: dict[str, Any]) -> str:
    """The stack-choosing options given (` --config-env local`, ` --stack-name s`), to repeat in a
    command printed for the user: it must reach the same stack."""
    out = ""
    if aws.get("config_env") not in (None, "default"):
        out += f" --config-env {shlex.quote(str(aws['config_env']))}"
    for key in ("stack_name", "region", "profile"):
        if aws.get(key):
            out += f" --{key.replace('_', '-')} {shlex.quote(str(aws[key]))}"
    return out
