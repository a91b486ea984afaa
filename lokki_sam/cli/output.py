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


def print_json(document: Any) -> None:
    """One JSON document on stdout (every --json output, success or error)."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=repr))


def error_document(
    message: str,
    *,
    kind: str,
    exit_code: int,
    where: str | None = None,
    hint: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What --json prints on stdout when a command fails: the error, and what is known around it
    (a failed run's `flow` and `run_id`, beside `error` as a successful run's are beside `result`)."""
    error = {"type": kind, "message": message, "where": where, "hint": hint, "exit_code": exit_code}
    return {**{key: json_result(value) for key, value in (details or {}).items()}, "error": error}
