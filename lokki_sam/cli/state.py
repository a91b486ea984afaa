"""What every command shares: the project config (loaded on first use) and error reporting
(`error: ...` on stderr, and with --json an error document on stdout)."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, TypeVar

import click
from click.utils import PacifyFlushWrapper

from lokki_sam.cli.output import error_document, print_json
from lokki_sam.config import Config, load_config
from lokki_sam.errors import LokkiError

F = TypeVar("F", bound=Callable[..., Any])


class CliState:
    """Per-invocation state, on the root context's `obj`; plain Python, no click inside."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._held: list[str] | None = None
        # Logging settings given on the command line of `main(flow)` (upstream lokki's
        # `python flow.py --log-level DEBUG run`): they win over the config's.
        self.log_level: str | None = None
        self.log_format: str | None = None

    @property
    def config(self) -> Config:
        """The project config, loaded on first use; its warnings are printed then, once (or held)."""
        if self._config is None:
            self._config = load_config()
            for warning in self._config.warnings:
                if self._held is not None:
                    self._held.append(warning)
                else:
                    click.echo(f"warning: {warning}", err=True)
        return self._config

    def hold_warnings(self) -> None:
        """Keep the config's warnings for the run's reporter (JSON lines stay JSON; -q silences them)."""
        if self._held is None:
            self._held = []

    def held_warnings(self) -> list[str]:
        held, self._held = self._held or [], []
        return held

    def flow_ref(self, flow_ref: str | None, command: str) -> str:
        """FLOW_REF as given, else the configured `flow`."""
        ref = flow_ref or self.config.get("flow")
        if not ref:
            raise LokkiError(
                "no FLOW_REF given and no 'flow' in lokki.toml / [tool.lokki]",
                hint=f'lokki-sam {command} path/to/flow.py[:flow] (or set flow = "..." in lokki.toml)',
            )
        return str(ref)


pass_state = click.make_pass_decorator(CliState, ensure=True)

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 1  # Python's own code for an uncaught exception


def report_error(exc: LokkiError, *, as_json: bool = False) -> None:
    """`error: ...` on stderr; with --json also the error document on stdout (its only output)."""
    click.echo(f"error: {exc.render()}", err=True)
    if as_json:
        print_json(
            error_document(
                exc.message,
                kind=type(exc).__name__,
                exit_code=exc.exit_code,
                where=exc.where,
                hint=exc.hint,
                details=exc.details,
            )
        )


def handle_errors(fn: F) -> F:
    """Print LokkiErrors as `error: ...` with their exit code, without a traceback. A command with
    --json (its `as_json` argument) also gets an error document on stdout for every failure: its
    own, Ctrl-C, and a bug in lokki-sam (whose traceback still goes to stderr)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except LokkiError as exc:
            report_error(exc, as_json=as_json)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            if as_json:
                print_json(error_document("interrupted", kind="KeyboardInterrupt", exit_code=EXIT_INTERRUPTED))
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if as_json:
                message = f"lokki-sam failed unexpectedly: {type(exc).__name__}: {exc}"
                hint = "the traceback is on stderr; please report it"
                print_json(error_document(message, kind=type(exc).__name__, exit_code=EXIT_INTERNAL, hint=hint))
            raise

    return wrapper  # type: ignore[return-value]


class CommandLine(click.Group):
    """A group whose usage errors (unknown option, missing argument...) honour --json too: the
    error document on stdout and click's usage text on stderr, with click's exit codes."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            _suggest(exc)
            exc.show()
            if as_json:
                print_json(error_document(exc.format_message(), kind=type(exc).__name__, exit_code=exc.exit_code))
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except BrokenPipeError:  # `lokki-sam ... | head`: as click's standalone mode does
            sys.stdout = PacifyFlushWrapper(sys.stdout)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _suggest(exc: click.ClickException) -> None:
    """`No such option: --limt` says `Did you mean --limit?`: the closest of the options click
    found close (compared without their dashes, which make every long option look alike)."""
    if not isinstance(exc, click.NoSuchOption) or not exc.possibilities:
        return
    by_name = {option.lstrip("-"): option for option in exc.possibilities}
    close = difflib.get_close_matches(exc.option_name.lstrip("-"), list(by_name), n=1)
    exc.message = f"No such option: {exc.option_name}" + (f". Did you mean {by_name[close[0]]}?" if close else "")
    exc.possibilities = None
