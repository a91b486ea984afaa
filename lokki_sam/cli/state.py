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

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config()
        return self._config

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
