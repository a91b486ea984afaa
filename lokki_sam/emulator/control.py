"""Start, stop and inspect the emulators lokki-sam runs in the background.

`start` refuses a second instance of an engine and a port already in use, builds the engine's
venv on first use, starts the engine in its own session (so `stop` can end its whole process
group, Lambda workers included), records it, and returns once it answers. A record whose
process is gone is a crashed emulator: `status` shows its log, and `start` replaces it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lokki_sam.emulator import process, state
from lokki_sam.emulator.engines import ENGINES, REGION, Engine, get_engine
from lokki_sam.emulator.errors import EmulatorError
from lokki_sam.emulator.state import Record

LOG_TAIL_LINES = 20
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def client_environment(endpoint: str) -> dict[str, str]:
    """What points the AWS CLI, the SAM CLI, boto3 and lokki-sam at an emulator."""
    return {"AWS_ENDPOINT_URL": endpoint, **DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": REGION}


@dataclass(frozen=True)
class Started:
    record: Record
    seconds: float  # from launch until it answered

    @property
    def environment(self) -> dict[str, str]:
        return client_environment(self.record.endpoint)


@dataclass(frozen=True)
class Status:
    engine: str
    state: str  # "running", "stopped" or "crashed"
    record: Record | None = None
    answering: bool = False
    log_tail: str = ""


def start(engine_name: str, port: int, python_version: str | None, progress: Callable[[str], None]) -> Started:
    engine = get_engine(engine_name)
    with state.locked(engine.name):  # two shells starting one engine: the second finds it running
        return _start(engine, port, python_version, progress)


def _start(engine: Engine, port: int, python_version: str | None, progress: Callable[[str], None]) -> Started:
    _check_not_running(engine)
    _check_port(port)
    version = python_version or engine.default_python(Path.cwd())
    engine.check_python(version)
    venv = engine.ensure_venv(version, progress)
    workdir = state.workdir(engine.name)
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh cloud: the engines keep their state in memory anyway
    workdir.mkdir(parents=True)
    log = workdir / f"{engine.name}.log"
    env = engine.environment(venv, port, workdir)
    began = time.monotonic()
    child = process.launch(engine.command(venv), env, workdir, log)
    record = Record(
        engine=engine.name,
        version=engine.version,
        pid=child.pid,
        started=process.started_at(child.pid) or 0.0,
        since=time.time(),
        port=port,
        python=version,
        venv=str(venv),
        log=str(log),
        workdir=str(workdir),
        boot=process.boot_id(),
    )
    record.save()  # before waiting: an interrupted start can still be stopped
    try:
        ready = process.wait_ready(record.endpoint + engine.health_path, child, engine.ready_timeout, engine.healthy)
    except BaseException:
        _end(record)
        raise
    if not ready:
        exited = child.poll()
        _end(record)
        what = f"exited with code {exited}" if exited is not None else f"gave no answer in {engine.ready_timeout:.0f} s"
        raise EmulatorError(
            f"{engine.name} {what} while starting on 127.0.0.1:{port}\n{_indent(tail(log))}",
            hint=f"its log: {log}",
        )
    return Started(record, time.monotonic() - began)


def _check_not_running(engine: Engine) -> None:
    record = _load(engine.name)
    if record is None:
        return
    if process.alive(record.identity):
        raise EmulatorError(
            f"{engine.name} is already running on {record.endpoint} (pid {record.pid})",
            hint=f"use it (export AWS_ENDPOINT_URL={record.endpoint}), "
            f"or stop it: `lokki-sam emulator stop --engine {engine.name}`",
        )
    _end(record)  # it crashed earlier: its leftovers go, the new one takes its place


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise EmulatorError(f"port {port} is not a TCP port (1-65535)", hint="pass --port 4566")
    if process.port_free(port):
        return
    holder = next((r for r in _records() if r.port == port and process.alive(r.identity)), None)
    who = f"lokki-sam's {holder.engine} (pid {holder.pid})" if holder else "another program"
    raise EmulatorError(
        f"port {port} on 127.0.0.1 is in use by {who}",
        hint="pass another --port, or stop what listens there"
        + (f" (`lokki-sam emulator stop --engine {holder.engine}`)" if holder else ""),
    )


def stop(engine_name: str | None) -> list[Record]:
    """Stop the engine (or every recorded one); the records of those stopped."""
    names = [get_engine(engine_name).name] if engine_name else list(ENGINES)
    records = [r for r in (_load(name) for name in names) if r is not None]
    if not records:
        which = engine_name or "emulator"
        raise EmulatorError(f"no {which} is running (none recorded in {state.emulators_dir()})", hint=START_HINT)
    stopped: list[Record] = []
    crashed: list[Record] = []
    for record in records:
        (stopped if process.alive(record.identity) else crashed).append(record)
        _end(record)
    if crashed:
        lines = [f"{r.engine} was not running: it exited on its own\n{_indent(tail(Path(r.log)))}" for r in crashed]
        done = "".join(f"\nstopped {r.engine} (pid {r.pid})" for r in stopped)
        raise EmulatorError("\n".join(lines) + done, hint=f"its log: {crashed[0].log}; {START_HINT}")
    return stopped


START_HINT = "start one with `lokki-sam emulator start [--engine localstack|ministack]`"


def status() -> list[Status]:
    found = []
    for name in ENGINES:
        record = _load(name)
        if record is None:
            found.append(Status(name, "stopped"))
        elif process.alive(record.identity):
            found.append(Status(name, "running", record, answering=_answers(record)))
        else:
            found.append(Status(name, "crashed", record, log_tail=tail(Path(record.log))))
    return found


def _answers(record: Record) -> bool:
    import urllib.request

    engine = get_engine(record.engine)
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(record.endpoint + engine.health_path, timeout=2) as response,
    ):
        return bool(response.status == 200)
    return False


def _end(record: Record) -> None:
    """Stop the record's process group (if any of it is left), forget it, drop its scratch files."""
    process.stop_group(record.identity, Path(record.workdir))
    record.forget()
    workdir = Path(record.workdir)
    for scratch in ("tmp", "home", "fs"):
        shutil.rmtree(workdir / scratch, ignore_errors=True)  # Lambda code, workers' /tmp; the log stays


def _records() -> list[Record]:
    return [r for r in (_load(name) for name in ENGINES) if r is not None]


def _load(engine: str) -> Record | None:
    """The engine's record. One written by an older lokki-sam names no boot: it still identifies its
    engine when the process with that pid and start time works in the record's own folder."""
    record = state.load(engine)
    if record is not None and not record.boot and process.works_in(record.pid, record.started, Path(record.workdir)):
        return replace(record, boot=process.boot_id())
    return record


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


def _indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())
