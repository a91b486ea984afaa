"""Which emulators lokki-sam started: one small JSON record per engine, in a per-user state dir.

`$LOKKI_SAM_STATE`, else `$XDG_STATE_HOME/lokki-sam`, else `~/.local/state/lokki-sam` (from
$HOME, so a test's private HOME has its own records). A record names the process by pid, its
start time and the boot, so a recycled pid (or a record from before a reboot) is never taken for
the emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lokki_sam.emulator.process import Identity, file_lock


def state_root() -> Path:
    configured = os.environ.get("LOKKI_SAM_STATE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "lokki-sam"


def emulators_dir() -> Path:
    return state_root() / "emulators"


def workdir(engine: str) -> Path:
    """The engine's files while it runs: log, HOME, TMPDIR (Lambda code), data."""
    return emulators_dir() / engine


@dataclass(frozen=True)
class Record:
    engine: str
    version: str
    pid: int  # also the process group id: the engine leads its own session
    started: float  # the process's start time (seconds since boot, /proc), to tell a recycled pid
    since: float  # wall-clock start (epoch seconds), for `status`
    port: int
    python: str  # the interpreter version of the engine's venv
    venv: str
    log: str
    workdir: str
    boot: str = ""  # the boot the process started in ("": written by an older lokki-sam, proves nothing)

    @property
    def identity(self) -> Identity:
        return Identity(self.pid, self.started, self.boot)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def save(self) -> None:
        path = record_path(self.engine)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temp.replace(path)  # atomic: `status` never reads half a record

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            record_path(self.engine).unlink()


def locked(engine: str) -> contextlib.AbstractContextManager[None]:
    """Hold the engine's lock file while its record is checked and written."""
    return file_lock(emulators_dir() / f"{engine}.lock")


def record_path(engine: str) -> Path:
    return emulators_dir() / f"{engine}.json"


def load(engine: str) -> Record | None:
    """The engine's record, or None (none, or unreadable: then it is removed)."""
    path = record_path(engine)
    try:
        raw: Any = json.loads(path.read_text())
        return Record(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)  # a damaged record names no process we could stop safely
        return None
