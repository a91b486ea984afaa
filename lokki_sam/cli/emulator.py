"""`lokki-sam emulator start|stop|status`: a local AWS cloud on 127.0.0.1 (see lokki_sam.emulator)."""

from __future__ import annotations

import datetime as dt
import shlex

import click

from lokki_sam.cli.state import handle_errors

ENGINE_NAMES = ("localstack", "ministack")
engine_choice = click.Choice(ENGINE_NAMES)


@click.group("emulator")
def command() -> None:
    """A local AWS cloud (LocalStack or ministack) running real Lambda code, no Docker.

    `eval "$(lokki-sam emulator start)"` starts it and points this shell's AWS tools at it.
    """


@command.command("start")
@click.option("--engine", type=engine_choice, default="localstack", show_default=True, help="Which emulator.")
@click.option("--port", type=int, default=4566, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--python",
    "python_version",
    metavar="3.X",
    help="Python of the engine's venv [localstack: 3.13; ministack: template.yaml's Runtime, which its Lambdas "
    "run under, else this Python].",
)
@handle_errors
def start_command(engine: str, port: int, python_version: str | None) -> None:
    """Start an emulator in the background; print the `export` line for its endpoint."""
    from lokki_sam.emulator import control

    started = control.start(engine, port, python_version, progress=lambda text: click.echo(text, err=True))
    record = started.record
    click.echo(
        f"{record.engine} {record.version} ready on {record.endpoint} in {started.seconds:.1f} s "
        f"(pid {record.pid}, Python {record.python}, log {record.log})",
        err=True,
    )
    click.echo(f"stop it with: lokki-sam emulator stop --engine {record.engine}", err=True)
    click.echo("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in started.environment.items()))


@command.command("stop")
@click.option("--engine", type=engine_choice, help="Which emulator [default: every running one].")
@handle_errors
def stop_command(engine: str | None) -> None:
    """Stop an emulator started by `lokki-sam emulator start` (its whole process group)."""
    from lokki_sam.emulator import control

    for record in control.stop(engine):
        click.echo(f"stopped {record.engine} on {record.endpoint} (pid {record.pid})", err=True)


@command.command("status")
@handle_errors
def status_command() -> None:
    """Which emulators run (endpoint, pid, log); a crashed one shows its log and exits 2."""
    from lokki_sam.emulator import control
    from lokki_sam.emulator.errors import EmulatorError

    crashed = []
    for found in control.status():
        record = found.record
        if record is None:
            click.echo(f"{found.engine}: stopped")
        elif found.state == "running":
            since = dt.datetime.fromtimestamp(record.since, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            answers = "" if found.answering else " (not answering yet)"
            click.echo(
                f"{found.engine}: running on {record.endpoint}{answers}, pid {record.pid}, "
                f"{record.engine} {record.version}, Python {record.python}, since {since}, log {record.log}"
            )
        else:
            click.echo(f"{found.engine}: crashed (pid {record.pid} is gone); last lines of {record.log}:")
            click.echo("\n".join(f"    | {line}" for line in found.log_tail.splitlines()))
            crashed.append(found.engine)
    if crashed:
        raise EmulatorError(
            f"{', '.join(crashed)} exited on its own",
            hint="see the log above; `lokki-sam emulator start` starts a new one",
        )
