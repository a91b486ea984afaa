"""`main(flow)`: a command line for one flow module, `python my_flow.py run --limit 2`.

It keeps upstream lokki's shape: logging options before the command
(`python my_flow.py --log-level DEBUG --log-format json run`), and upstream's other commands
say what replaces them instead of failing as unknown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lokki_sam import __version__
from lokki_sam.cli.options import run_options
from lokki_sam.cli.run import execute_run
from lokki_sam.cli.state import CliState, CommandLine, handle_errors, report_error
from lokki_sam.config import LOG_FORMATS, LOG_LEVELS
from lokki_sam.dsl import Flow
from lokki_sam.errors import LokkiError
from lokki_sam.params import as_text

# The run options' names (`--store`, `-q`...) and the keyword arguments they arrive as.
RUN_OPTION_NAMES = {
    "resume",
    "rerun",
    "store",
    "executor",
    "json",
    "as_json",
    "quiet",
    "q",
    "verbose",
    "v",
    "help",
    "h",
}

# Upstream lokki's other commands of `python flow.py ...`, and what does their job here.
REPLACED_COMMANDS = {
    "build": "lokki-sam generate {file} writes the SAM app; then `sam build`",
    "deploy": "lokki-sam generate {file}, `sam build`, then `sam deploy --guided`",
    "invoke": "lokki-sam invoke {file} -p NAME=VALUE (runs the deployed flow and prints its result)",
    "show": "lokki-sam runs {flow} (recent runs), lokki-sam result RUN_ID --flow {file}",
    "logs": "`sam logs --stack-name STACK` (add --tail to follow)",
    "destroy": "`sam delete` (the artifact bucket is kept: it holds data)",
}


def check_parameter_names(flow_obj: Flow) -> None:
    """A flow parameter named like a run option would be hijacked by it (or hijack it): refuse."""
    taken = [p.name for p in flow_obj.graph.params if p.name in RUN_OPTION_NAMES]
    if taken:
        name = taken[0]
        raise LokkiError(
            f"flow parameter '{name}' has the name of one of main()'s own options "
            f"(--{name.replace('_', '-')}), so `python {flow_obj.name}.py run` cannot take it",
            where=f"flow '{flow_obj.name}'",
            hint=f"rename the parameter, or run the flow with `lokki-sam run FILE -p {name}=...`",
        )


def _replaced_command(name: str, flow_obj: Flow) -> click.Command:
    module = sys.modules.get(flow_obj.graph.module)
    file = getattr(module, "__file__", None)
    shown = os.path.relpath(file) if file and Path(file).resolve().is_relative_to(Path.cwd()) else file
    instead = REPLACED_COMMANDS[name].format(file=shown or "FILE", flow=flow_obj.name)

    @handle_errors
    def replaced(**_: Any) -> None:
        raise LokkiError(f"`{name}` is upstream lokki's command; lokki-sam does it differently", hint=instead)

    return click.Command(
        name,
        callback=replaced,
        help=f"(upstream lokki) use: {instead}",
        hidden=True,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


def flow_main(flow_obj: Flow, argv: list[str] | None = None) -> None:
    try:
        check_parameter_names(flow_obj)
    except LokkiError as exc:
        report_error(exc, as_json="--json" in (sys.argv[1:] if argv is None else argv))
        sys.exit(exc.exit_code)

    state = CliState()
    state.hold_warnings()  # config warnings go through the run's reporter

    @click.group(cls=CommandLine, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="lokki-sam")
    @click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        help="What the run reports [default: config log_level, INFO].",
    )
    @click.option(
        "--log-format", type=click.Choice(LOG_FORMATS), help="human or json lines [default: config log_format]."
    )
    def group(log_level: str | None, log_format: str | None) -> None:
        state.log_level = log_level.upper() if log_level else None
        state.log_format = log_format

    def run_single(
        resume: str | None,
        rerun: tuple[str, ...],
        store: str | None,
        executor: str | None,
        as_json: bool,
        quiet: bool,
        verbose: bool,
        **values: Any,
    ) -> None:
        given = {name: value for name, value in values.items() if value is not None}
        execute_run(state, flow_obj, given, resume, store, as_json, quiet, verbose, rerun, executor)

    command: Callable[..., Any] = handle_errors(run_single)
    for param in reversed(flow_obj.graph.params):
        help_text = f"{param.type_name}" + ("" if param.required else f" [default: {as_text(param.default)}]")
        flag = param.name.replace("_", "-")
        if param.effective_type is bool:  # --include-returns / --no-include-returns
            option = click.option(f"--{flag}/--no-{flag}", param.name, default=None, help=help_text)
        else:
            option = click.option(f"--{flag}", param.name, type=str, help=help_text)
        command = option(command)
    command = run_options(command)
    group.command("run", help=f"Run flow '{flow_obj.name}' locally.")(command)
    for name in REPLACED_COMMANDS:
        group.add_command(_replaced_command(name, flow_obj))
    group(args=argv, prog_name=sys.argv[0] if argv is None else flow_obj.name)
