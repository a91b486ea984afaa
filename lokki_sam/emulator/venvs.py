"""Cached virtual environments for tools that pin packages lokki-sam's own environment cannot
hold (ministack pins botocore, LocalStack boto3). Built once per name, under a file lock so
concurrent builders (parallel test workers, two shells) wait for the first one, and outside
$HOME (tests repoint HOME; the cache must outlive them)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from lokki_sam.emulator.process import file_lock

# Output kept from a failed pip run: its last lines say why (no network, no such version...).
OUTPUT_TAIL = 3000


def cache_root() -> Path:
    """$LOKKI_SAM_CACHE, else ~/.cache/lokki-sam of the real user (not $HOME)."""
    configured = os.environ.get("LOKKI_SAM_CACHE")
    return Path(configured) if configured else Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "lokki-sam"


def cached_venv(
    name: str,
    python: str,
    requirements: Sequence[str],
    error: type[Exception],
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """The venv `<cache>/<name>` built with interpreter `python` holding `requirements`, then
    `finish(venv)` (extra installs). A failed build leaves nothing behind and raises `error`
    with the failing command's output."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / name
    marker = venv / ".complete"
    if marker.exists():
        return venv
    with locked(name):
        if marker.exists():
            return venv
        try:
            shutil.rmtree(venv, ignore_errors=True)
            run([python, "-m", "venv", str(venv)], error)
            pip(venv, ["install", "--quiet", *requirements], error)
            if finish is not None:
                finish(venv)
            marker.write_text("\n".join(requirements) + "\n")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    return venv


def locked(name: str) -> contextlib.AbstractContextManager[None]:
    """Hold the cache's file lock `name` (other processes wait for it)."""
    return file_lock(cache_root() / f"{name}.lock")


def pip(venv: Path, args: Sequence[str], error: type[Exception]) -> None:
    run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args], error)


def run(cmd: Sequence[str], error: type[Exception]) -> None:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True)
    except OSError as exc:
        raise error(f"{cmd[0]} cannot run: {exc}") from None
    if proc.returncode != 0:
        output = (proc.stdout + "\n" + proc.stderr).strip()[-OUTPUT_TAIL:]
        raise error(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{output}")
