"""Reading what `lokki-sam emulator start` prints for the shell; an emulator started for a project."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from lokki_sam.emulator.process import free_port

BIN = Path(sys.executable).parent


def exported(stdout: str) -> dict[str, str]:
    """`export A=1 B=2` (the start command's stdout) -> {"A": "1", "B": "2"}."""
    words = shlex.split(stdout.strip())
    assert words and words[0] == "export", stdout
    return dict(word.split("=", 1) for word in words[1:])


@contextlib.contextmanager
def started_in(root: Path, env: dict[str, str], engine: str = "localstack") -> Iterator[dict[str, str]]:
    """`lokki-sam emulator start` in the project folder `root` (as a user starts it there), yielding
    `env` plus what it exports; `lokki-sam emulator stop` afterwards, also when the body fails."""
    start = [str(BIN / "lokki-sam"), "emulator", "start", "--engine", engine, "--port", str(free_port())]
    started = subprocess.run(start, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, started.stderr
    try:
        yield env | exported(started.stdout)
    finally:
        stop = [str(BIN / "lokki-sam"), "emulator", "stop", "--engine", engine]
        stopped = subprocess.run(stop, cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
