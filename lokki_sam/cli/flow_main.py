"""`main(flow)`: a command line for one flow module, `python my_flow.py run --limit 2`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from lokki_sam import __version__
from lokki_sam.cli.options import run_options
from lokki_sam.cli.run import execute_run
from lokki_sam.cli.state import CliState, handle_errors
from lokki_sam.dsl import Flow


def flow_main(flow_obj: Flow, argv: list[str] | None = None) -> None:
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
        command = click.option(f"--{param.name.replace('_', '-')}", param.name, type=str, help=help_text)(command)
    command = run_options(command)
    group.command("run", help=f"Run flow '{flow_obj.name}' locally.")(command)
    group(args=argv, prog_name=sys.argv[0] if argv is None else flow_obj.name)
