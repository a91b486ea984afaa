"""Which interpreter runs a function, and the settings `lokki-sam emulator start` passes in
(`lokki_sam/emulator/plugin.py`; the defaults here are the same).

`LOKKI_EMULATOR_PYTHONS` maps "3.11" to the interpreter lokki-sam discovered for it (PATH,
pyenv); else `python3.X` on PATH. Without either, the function runs under this (LocalStack's)
Python, with only its standard library (`-S`), and its log says so.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys


def python_version(runtime: str | None) -> str | None:
    """ "python3.11" -> "3.11"; None for any other runtime."""
    text = str(runtime or "")
    if text.startswith("python3."):
        return text[len("python") :]
    return None


@functools.cache
def interpreter_for(version: str) -> tuple[str, str | None]:
    """(interpreter, notice): the notice says when it is not a python`version`."""
    known = _known().get(version)
    if known and _runs(known, version):
        return known, None
    on_path = shutil.which(f"python{version}")
    if on_path and _runs(on_path, version):
        return on_path, None
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    return sys.executable, (
        f"lokki-sam emulator: no python{version} found for runtime python{version}; this function runs "
        f"under Python {mine} ({sys.executable}) instead. Install python{version} and restart the emulator."
    )


def _known() -> dict[str, str]:
    try:
        found = json.loads(os.environ.get("LOKKI_EMULATOR_PYTHONS") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _runs(candidate: str, version: str) -> bool:
    check = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run([candidate, "-c", check], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def runtime_path() -> str:
    """boto3 for functions (lokki-sam installs it next to LocalStack's venv)."""
    return os.environ.get("LOKKI_EMULATOR_RUNTIME_PATH", "")


def workers() -> int:
    """Function processes alive at once, busy and idle, across all functions (0: no bound)."""
    return _setting("LOKKI_EMULATOR_WORKERS", default_workers())


def map_concurrency() -> int:
    """Child executions a map without MaxConcurrency runs at once (0: all of them, LocalStack's way)."""
    return _setting("LOKKI_EMULATOR_MAP_CONCURRENCY", default_map_concurrency())


def default_workers() -> int:
    """Two per core: a trivial step mostly waits on LocalStack (S3), so one per core idles the CPU."""
    return max(2, 2 * (os.cpu_count() or 1))


def default_map_concurrency() -> int:
    """Twice the workers: while one child invokes its function, another is between states."""
    return 2 * default_workers()


def _setting(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name) or default))
    except ValueError:
        return default
