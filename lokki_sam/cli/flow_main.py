"""`main(flow)`: a command line for one flow module, `python my_flow.py run --limit 2`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from lokki_sam import __version__
from lokki_sam.cli.options import run_options
from lokki_sam.cli.run import execute_run
from lokki_sam.cli.state import CliState, handle_errors, report_error
from lokki_sam.dsl import Flow
from lokki_sam.errors import LokkiError

# The run options' names (`--store`, `-q`...) and the keyword arguments they arrive as.
RUN_OPTION_NAMES = {"resume", "store", "json", "as_json", "quiet", "q", "help", "h"}


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


def flow_main(flow_obj: Flow, argv: list[str] | None = None) -> None:
    try:
        check_parameter_names(flow_obj)
    except LokkiError as exc:
        report_error(exc)
        sys.exit(exc.exit_code)

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="lokki-sam")
    def group() -> None:
        pass

    state = CliState()

    def run_single(resume: str | None, store: str | None, as_json: bool, quiet: bool, **values: Any) -> None:
        given = {name: value for name, value in values.items() if value is not None}
        execute_run(state, flow_obj, given, resume, store, as_json, quiet)

    command: Callable[..., Any] = handle_errors(run_single)
    for param in reversed(flow_obj.graph.params):
        help_text = f"{param.type_name}" + ("" if param.required else f" [default: {param.default!r}]")
        flag = param.name.replace("_", "-")
        if param.effective_type is bool:  # --include-returns / --no-include-returns
            option = click.option(f"--{flag}/--no-{flag}", param.name, default=None, help=help_text)
        else:
            option = click.option(f"--{flag}", param.name, type=str, help=help_text)
        command = option(command)
    command = run_options(command)
    group.command("run", help=f"Run flow '{flow_obj.name}' locally.")(command)
    group(args=argv, prog_name=sys.argv[0] if argv is None else flow_obj.name)
