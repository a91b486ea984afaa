"""The `lokki-sam` command line.

Exit codes: 0 success; 1 a step (or a deployed execution) failed; 2 bad input (usage, flow
definition, parameters, config, store). User errors print a message and a hint, no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from lokki_sam import __version__
from lokki_sam.config import Config, load_config
from lokki_sam.dsl import Flow
from lokki_sam.errors import EXIT_USAGE, LokkiError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Print LokkiErrors as `error: ...` with their exit code, without a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LokkiError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def get_config() -> Config:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if "config" not in root.meta:
        root.meta["config"] = load_config()
    config: Config = root.meta["config"]
    return config


def flow_ref_or_config(flow_ref: str | None) -> str:
    ref = flow_ref or get_config().get("flow")
    if not ref:
        raise LokkiError(
            "no FLOW_REF given and no 'flow' in lokki.toml / [tool.lokki]",
            hint='lokki-sam run path/to/flow.py[:flow] (or set flow = "..." in lokki.toml)',
        )
    return str(ref)


def print_result(value: Any) -> None:
    """Strings print as they are; JSON-able values as JSON; anything else as its repr."""
    if isinstance(value, str):
        click.echo(value)
        return
    try:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))
    except (TypeError, ValueError):
        from pprint import pformat

        click.echo(pformat(value))


def json_result(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lokki-sam")
def cli() -> None:
    """Run Python data pipelines locally and on AWS Step Functions + Lambda (via AWS SAM)."""


def execute_run(
    flow_obj: Flow,
    raw_params: dict[str, Any],
    resume: str | None,
    store: str | None,
    as_json: bool,
    quiet: bool = False,
) -> None:
    from lokki_sam.local import run_flow
    from lokki_sam.progress import JsonReporter, Reporter, RichReporter

    config = get_config()
    reporter: Reporter = JsonReporter() if as_json else (Reporter() if quiet else RichReporter())
    try:
        outcome = run_flow(
            flow_obj,
            raw_params,
            store=store or config["store"],
            resume=resume,
            reporter=reporter,
            concurrency=config.get("concurrency"),
        )
    finally:
        reporter.close()
    if as_json:
        failures = [f.__dict__ | {"indexes": list(f.indexes)} for f in outcome.failures]
        payload = {
            "flow": flow_obj.name,
            "run_id": outcome.run_id,
            "params": json_result(outcome.params),
            "result": json_result(outcome.result),
            "failed_items": failures,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        print_result(outcome.result)


def run_options(command: F) -> F:
    """The options `lokki-sam run` and `python my_flow.py run` (main(flow)) share."""
    options = (
        click.option("--resume", metavar="RUN_ID", help="Resume a run: recompute only what did not complete."),
        click.option("--store", metavar="DIR", help="Directory of run artifacts [default: .lokki/runs]."),
        click.option("--json", "as_json", is_flag=True, help="JSON log lines on stderr and a JSON result on stdout."),
        click.option("-q", "--quiet", is_flag=True, help="Print only the result."),
    )
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@click.argument("flow_ref", required=False)
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A flow parameter (repeatable).")
@run_options
@handle_errors
def run(
    flow_ref: str | None, params: tuple[str, ...], resume: str | None, store: str | None, as_json: bool, quiet: bool
) -> None:
    """Run a flow locally. FLOW_REF is path/to/file.py[:flow] or package.module[:flow]."""
    from lokki_sam.loader import load_flow
    from lokki_sam.params import parse_assignments

    flow_obj = load_flow(flow_ref_or_config(flow_ref))
    raw = parse_assignments(params, where=f"flow '{flow_obj.name}'")
    execute_run(flow_obj, raw, resume, store, as_json, quiet)


def flow_main(flow_obj: Flow, argv: list[str] | None = None) -> None:
    """A command line for one flow module: `python my_flow.py run --limit 2`."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="lokki-sam")
    def group() -> None:
        pass

    def run_single(resume: str | None, store: str | None, as_json: bool, quiet: bool, **values: Any) -> None:
        given = {name: value for name, value in values.items() if value is not None}
        execute_run(flow_obj, given, resume, store, as_json, quiet)

    command: Callable[..., Any] = handle_errors(run_single)
    for param in reversed(flow_obj.graph.params):
        help_text = f"{param.type_name}" + ("" if param.required else f" [default: {param.default!r}]")
        command = click.option(f"--{param.name.replace('_', '-')}", param.name, type=str, help=help_text)(command)
    command = run_options(command)
    group.command("run", help=f"Run flow '{flow_obj.name}' locally.")(command)
    group(args=argv, prog_name=sys.argv[0] if argv is None else flow_obj.name)


def main() -> None:
    try:
        cli(prog_name="lokki-sam")
    except LokkiError as exc:  # raised outside a command (config loading)
        click.echo(f"error: {exc.render()}", err=True)
        sys.exit(EXIT_USAGE)


# ------------------------------------------------------------ commands living in their own modules
def _register_generate() -> None:
    from lokki_sam.generate import generate_command
    from lokki_sam.visualize import graph_command

    cli.add_command(generate_command)
    cli.add_command(graph_command)


_register_generate()


def _register_cloud() -> None:
    from lokki_sam.cloud.invoke import invoke
    from lokki_sam.cloud.result import result
    from lokki_sam.cloud.runs import runs

    cli.add_command(invoke)
    cli.add_command(runs)
    cli.add_command(result)


_register_cloud()
