"""Cached virtual environments for tools that pin packages lokki-sam's own environment cannot
hold (ministack pins botocore, LocalStack boto3). Built once per name, under a file lock so
concurrent builders (parallel test workers, two shells) wait for the first one, and outside
$HOME (tests repoint HOME; the cache must outlive them). A build takes minutes (LocalStack:
~120 packages), so it reports what it does as it goes: pip's packages collected, installed."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lokki_sam.emulator.process import file_lock

# Output kept from a failed pip run: its last lines say why (no network, no such version...).
OUTPUT_TAIL = 3000
REPORT_EVERY, REPORT_SECONDS = 10, 15.0  # progress while pip collects: every 10 packages, or 15 s apart

Progress = Callable[[str], None]


def _silent(text: str) -> None:
    pass


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
    progress: Progress = _silent,
) -> Path:
    """The venv `<cache>/<name>` built with interpreter `python` holding `requirements`, then
    `finish(venv)` (extra installs). A failed build leaves nothing behind and raises `error`
    with the failing command's output. `progress` hears each stage of a build."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / name
    marker = venv / ".complete"
    if marker.exists():
        return venv
    with locked(name, on_wait=lambda: progress(f"waiting for another process that is building {venv}")):
        if marker.exists():
            return venv
        try:
            shutil.rmtree(venv, ignore_errors=True)
            progress(f"creating the venv with {python}")
            run([python, "-m", "venv", str(venv)], error)
            pip_install(venv, requirements, error, progress)
            if finish is not None:
                finish(venv)
            marker.write_text("\n".join(requirements) + "\n")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    return venv


def locked(name: str, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold the cache's file lock `name` (other processes wait for it)."""
    return file_lock(cache_root() / f"{name}.lock", on_wait)


def pip(venv: Path, args: Sequence[str], error: type[Exception]) -> None:
    run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args], error)


def pip_install(
    venv: Path, requirements: Sequence[str], error: type[Exception], progress: Progress, *extra: str
) -> None:
    """`pip install` into `venv`, telling `progress` how far it is: packages collected (every
    REPORT_EVERY, or REPORT_SECONDS apart), then how many it installs, then done."""
    command = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install"]
    command += ["--progress-bar", "off", *extra, *requirements]
    began = last = time.monotonic()
    collected: list[str] = []
    output: list[str] = []
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise error(f"{command[0]} cannot run: {exc}") from None
    assert child.stdout is not None
    for line in child.stdout:
        output.append(line)
        if line.startswith(("Collecting ", "Processing ")):  # from an index; from a file (find-links)
            word = line.split()[1]
            collected.append(Path(word).name.split("-")[0] if line.startswith("Processing ") else word)
            now = time.monotonic()
            if len(collected) % REPORT_EVERY == 0 or now - last >= REPORT_SECONDS:
                progress(f"pip: {len(collected)} package(s) collected so far (latest: {collected[-1]})")
                last = now
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            progress(f"pip: installing {count} package(s) ({time.monotonic() - began:.0f} s so far)")
    code = child.wait()
    if code != 0:
        text = "".join(output).strip()[-OUTPUT_TAIL:]
        raise error(f"`{' '.join(command)}` failed (exit {code}):\n{text}")
    progress(f"pip: done in {time.monotonic() - began:.0f} s")


def run(cmd: Sequence[str], error: type[Exception]) -> None:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True)
    except OSError as exc:
        raise error(f"{cmd[0]} cannot run: {exc}") from None
    if proc.returncode != 0:
        output = (proc.stdout + "\n" + proc.stderr).strip()[-OUTPUT_TAIL:]
        raise error(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{output}")
