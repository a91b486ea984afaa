"""Cached virtual environments for tools that pin packages the project's own env cannot hold
(ministack pins botocore, checkov pins boto3). Built once per name, under a file lock so
parallel test workers wait for the first builder, and outside $HOME (tests repoint HOME)."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import subprocess
from pathlib import Path


def cache_root() -> Path:
    # The real home, not $HOME: tests point HOME at a temp dir, the cache must outlive them.
    configured = os.environ.get("LOKKI_SAM_CACHE")
    return Path(configured) if configured else Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "lokki-sam"


def cached_venv(name: str, python: str, requirements: list[str], error: type[Exception]) -> Path:
    """The venv `<cache>/<name>` built with interpreter `python` holding `requirements`.
    A failed build leaves nothing behind and raises `error` with pip's output."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / name
    marker = venv / ".complete"
    if marker.exists():
        return venv
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        try:
            shutil.rmtree(venv, ignore_errors=True)
            _run([python, "-m", "venv", str(venv)], error)
            _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements], error)
            marker.write_text("\n".join(requirements) + "\n")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    return venv


def _run(cmd: list[str], error: type[Exception]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise error(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
