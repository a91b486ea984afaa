"""How results reach stdout: the same rules for `run`, `invoke` and `result`."""

from __future__ import annotations

import json
from typing import Any

import click


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
    """`value` if JSON can hold it, else its repr (for --json documents)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
