"""The `lokki-sam` command line: a group whose commands load on first use.

Each command lives in its own module of this package and exposes `command`; they share state
(`state.py`), options (`options.py`) and output helpers (`output.py`) and import nothing from
each other. The logic behind them (`lokki_sam.cloud`, `generate`, `visualize`, ...) imports no click.

Exit codes: 0 success; 1 a step (or a deployed execution) failed; 2 bad input (usage, flow
definition, parameters, config, store); 130 interrupted. User errors print a message and a hint,
no traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from lokki_sam import __version__
from lokki_sam.cli.state import CommandLine, report_error
from lokki_sam.errors import LokkiError

# Command name -> module exposing `command`, in the order `--help` lists them.
COMMANDS = {
    "init": "lokki_sam.cli.init",
    "run": "lokki_sam.cli.run",
    "generate": "lokki_sam.cli.generate",
    "graph": "lokki_sam.cli.graph",
    "plan": "lokki_sam.cli.plan",
    "invoke": "lokki_sam.cli.invoke",
    "runs": "lokki_sam.cli.runs",
    "result": "lokki_sam.cli.result",
    "logs": "lokki_sam.cli.logs",
    "push": "lokki_sam.cli.push",
    "size": "lokki_sam.cli.size",
    "runtime-layer": "lokki_sam.cli.runtime_layer",
    "emulator": "lokki_sam.cli.emulator",
}


class LazyGroup(CommandLine):
    """Imports a command's module only when that command (or `--help`) needs it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(module).command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lokki-sam")
def cli() -> None:
    """Run Python data pipelines locally and on AWS Step Functions + Lambda (via AWS SAM)."""


def main() -> None:
    try:
        cli(prog_name="lokki-sam")
    except LokkiError as exc:  # raised outside a command's error handling
        report_error(exc, as_json="--json" in sys.argv[1:])
        sys.exit(exc.exit_code)
