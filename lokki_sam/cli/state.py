"""What every command shares: the project config (loaded on first use) and error reporting."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

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


def report_error(exc: LokkiError) -> None:
    click.echo(f"error: {exc.render()}", err=True)


def handle_errors(fn: F) -> F:
    """Print LokkiErrors as `error: ...` with their exit code, without a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LokkiError as exc:
            report_error(exc)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
