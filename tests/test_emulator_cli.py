"""`lokki-sam emulator` as a user runs it: start, status, stop, and every bad input of issue 13
(exit 2, a message that says why, no traceback). ministack is the real engine here (its venv is
cached and it starts in about a second); LocalStack's start and stop run in the journey test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lokki_sam.emulator import process
from tests.conftest import LOKKI_SAM, lokki_env

Run = Callable[..., subprocess.CompletedProcess[str]]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Run]:
    """`lokki-sam emulator ARGS` with a private HOME (so private records); stops what it started."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOKKI_SAM, "emulator", *args], cwd=tmp_path, env=env or lokki_env(tmp_path),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    yield run
    for record in (tmp_path / ".local" / "state" / "lokki-sam" / "emulators").glob("*.json"):
        data = json.loads(record.read_text())
        identity = process.Identity(data["pid"], data["started"], data["boot"])
        process.stop_group(identity, Path(data["workdir"]), grace=5)


def record_of(tmp_path: Path, engine: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (tmp_path / ".local" / "state" / "lokki-sam" / "emulators" / f"{engine}.json").read_text()
    )
    return data


def refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") or "\nerror: " in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_start_status_stop_and_every_misuse_in_between(emulator: Run, tmp_path: Path) -> None:
    port = process.free_port()
    started = emulator("start", "--engine", "ministack", "--port", str(port))
    assert started.returncode == 0, started.stderr
    endpoint = f"http://127.0.0.1:{port}"
    assert started.stdout == (
        f"export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
        "AWS_DEFAULT_REGION=us-east-1\n"
    )
    assert f"ministack 1.5.33 ready on {endpoint}" in started.stderr and f"Python {PYTHON}" in started.stderr
    with urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=5) as response:
        assert response.status == 200
    pid = int(str(record_of(tmp_path, "ministack")["pid"]))

    # Start twice: refused, and the running one is untouched.
    again = emulator("start", "--engine", "ministack", "--port", str(process.free_port()))
    refused(again, f"ministack is already running on {endpoint} (pid {pid})", "emulator stop --engine ministack")
    # Its port, for the other engine: named as taken by lokki-sam's ministack (before any install).
    refused(emulator("start", "--engine", "localstack", "--port", str(port)),
            f"port {port} on 127.0.0.1 is in use by lokki-sam's ministack (pid {pid})")  # fmt: skip

    status = emulator("status")
    assert status.returncode == 0, status.stderr
    assert f"ministack: running on {endpoint}, pid {pid}, ministack 1.5.33, Python {PYTHON}" in status.stdout
    assert "localstack: stopped" in status.stdout

    stopped = emulator("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped ministack on {endpoint} (pid {pid})" in stopped.stderr
    assert process.group_members(pid) == [] and process.port_free(port)
    assert "ministack: stopped" in emulator("status").stdout

    # Stop with nothing running.
    refused(emulator("stop"), "no emulator is running", "lokki-sam emulator start")
    refused(emulator("stop", "--engine", "localstack"), "no localstack is running")


def test_a_crashed_emulator_shows_in_status_with_its_log_and_is_replaced_by_a_new_start(
    emulator: Run, tmp_path: Path
) -> None:
    port = process.free_port()
    assert emulator("start", "--engine", "ministack", "--port", str(port)).returncode == 0
    record = record_of(tmp_path, "ministack")
    pid = int(str(record["pid"]))
    with Path(str(record["log"])).open("a") as log:
        log.write("last words before the crash\n")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.started_at(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    status = emulator("status")
    refused(status, "ministack exited on its own")
    assert f"ministack: crashed (pid {pid} is gone); last lines of {record['log']}" in status.stdout
    assert "    | last words before the crash" in status.stdout

    again = emulator("start", "--engine", "ministack", "--port", str(port))
    assert again.returncode == 0, again.stderr
    assert int(str(record_of(tmp_path, "ministack")["pid"])) != pid
    assert emulator("stop", "--engine", "ministack").returncode == 0


def test_stop_after_a_crash_says_so_and_forgets_it(emulator: Run, tmp_path: Path) -> None:
    assert emulator("start", "--engine", "ministack", "--port", str(process.free_port())).returncode == 0
    pid = int(str(record_of(tmp_path, "ministack")["pid"]))
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    refused(emulator("stop"), "ministack was not running: it exited on its own")
    assert "ministack: stopped" in emulator("status").stdout


def test_a_port_in_use_is_refused_before_anything_is_installed(emulator: Run, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = lokki_env(tmp_path, LOKKI_SAM_CACHE=str(tmp_path / "empty-cache"))
        refused(
            emulator("start", "--port", str(port), env=env), f"port {port} on 127.0.0.1 is in use by another program"
        )
    assert not (tmp_path / "empty-cache").exists()
    refused(emulator("start", "--port", "70000"), "port 70000 is not a TCP port")


def test_an_engine_that_cannot_be_installed_says_why(emulator: Run, tmp_path: Path) -> None:
    # No package index: pip finds no ministack, and says so; nothing half-built is left.
    env = lokki_env(tmp_path, LOKKI_SAM_CACHE=str(tmp_path / "cache"), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
    env.pop("PIP_FIND_LINKS", None)
    done = emulator("start", "--engine", "ministack", "--port", str(process.free_port()), env=env)
    refused(
        done,
        f"cannot install ministack 1.5.33 for Python {PYTHON}",
        "ministack==1.5.33",
        "hint: the engine is installed with pip",
    )
    assert "No matching distribution found for ministack==1.5.33" in done.stderr
    # What it was doing when it failed: the first start says what it installs, stage by stage.
    assert "installing ministack 1.5.33 for Python" in done.stderr and "first use, once" in done.stderr
    assert "creating the venv with " in done.stderr
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())
    assert "ministack: stopped" in emulator("status").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--engine", "ministack", "--python", "3.99"),
            "cannot run ministack 1.5.33 on Python 3.99: no python3.99 found (this interpreter, PATH, pyenv)",
        ),
        (("--engine", "localstack", "--python", "3.12"), "localstack 4.14.0 needs Python >= 3.13, not 3.12"),
        (("--python", "three"), "'three' is not a Python version like 3.13"),
    ],
)
def test_an_interpreter_that_is_missing_or_too_old_is_named(emulator: Run, args: tuple[str, ...], message: str) -> None:
    refused(emulator("start", "--port", str(process.free_port()), *args), message)


def test_an_unknown_engine_is_a_usage_error(emulator: Run) -> None:
    done = emulator("start", "--engine", "moto")
    assert done.returncode == 2 and "Invalid value for '--engine'" in done.stderr


def test_the_logic_imports_no_click_and_every_subcommand_has_help(tmp_path: Path) -> None:
    modules = ["control", "engines", "plugin", "process", "python", "state", "venvs"]
    code = "import sys\n" + "".join(f"import lokki_sam.emulator.{m}\n" for m in modules)
    code += "assert 'click' not in sys.modules, 'click imported'\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for sub in ("start", "stop", "status"):
        shown = subprocess.run(
            [LOKKI_SAM, "emulator", sub, "--help"], cwd=tmp_path, env=lokki_env(tmp_path),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0 and f"Usage: lokki-sam emulator {sub}" in shown.stdout, shown.stderr


def test_a_start_waits_while_another_start_of_the_engine_holds_its_lock(
    emulator: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shells starting one engine at once: the second checks for a running one only after the
    first has recorded it, so it never starts a second engine."""
    from lokki_sam.emulator import state

    monkeypatch.setenv("HOME", str(tmp_path))  # the records of the `emulator` fixture's commands
    for name in ("XDG_STATE_HOME", "LOKKI_SAM_STATE"):
        monkeypatch.delenv(name, raising=False)
    command = [LOKKI_SAM, "emulator", "start", "--engine", "ministack", "--port", str(process.free_port())]
    with state.locked("ministack"):
        waiting = subprocess.Popen(command, cwd=tmp_path, env=lokki_env(tmp_path), stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        assert waiting.poll() is None and state.load("ministack") is None
    assert waiting.wait(timeout=120) == 0
    assert state.load("ministack") is not None


def test_an_engine_that_dies_while_starting_shows_its_log(emulator: Run, tmp_path: Path) -> None:
    """A stand-in engine (nothing real can be made to die on cue): a cached 'venv' whose ministack
    prints a line and exits 3."""
    from lokki_sam.emulator.engines import get_engine

    venv = tmp_path / "cache" / get_engine("ministack").venv_name(PYTHON)
    (venv / "bin").mkdir(parents=True)
    (venv / ".complete").write_text("stand-in\n")
    (venv / "bin" / "ministack").write_text("#!/bin/sh\necho 'cannot bind, giving up'\nexit 3\n")
    (venv / "bin" / "ministack").chmod(0o755)
    port = process.free_port()
    env = lokki_env(tmp_path, LOKKI_SAM_CACHE=str(tmp_path / "cache"))
    done = emulator("start", "--engine", "ministack", "--port", str(port), env=env)
    refused(done, f"ministack exited with code 3 while starting on 127.0.0.1:{port}", "| cannot bind, giving up")
    assert "hint: its log: " in done.stderr
    assert "ministack: stopped" in emulator("status").stdout  # nothing recorded


def test_a_venv_build_reports_each_stage_and_how_many_packages_it_has_so_far(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first `emulator start` builds the engine's venv (LocalStack: ~120 packages, minutes);
    it must not sit silent. Twelve local packages that require each other stand for them."""
    from lokki_sam.emulator import venvs
    from lokki_sam.project.wheel import write_wheel

    wheels = tmp_path / "wheels"
    for i in range(12):
        needs = f"Requires-Dist: lokki-demo-{i + 1}\n" if i < 11 else ""
        metadata = f"Metadata-Version: 2.1\nName: lokki-demo-{i}\nVersion: 1.0\n{needs}"
        write_wheel(wheels, f"lokki-demo-{i}", "1.0", {f"lokki_demo_{i}/__init__.py": b""}, metadata)
    monkeypatch.setenv("LOKKI_SAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    said: list[str] = []
    venv = venvs.cached_venv("demo", sys.executable, ["lokki-demo-0"], RuntimeError, progress=said.append)
    assert (venv / ".complete").is_file()
    assert said[0] == f"creating the venv with {sys.executable}"
    assert "pip: 10 package(s) collected so far (latest: lokki_demo_9)" in said, said
    assert any(line.startswith("pip: installing 12 package(s)") for line in said), said
    assert said[-1].startswith("pip: done in ")
    said.clear()
    assert venvs.cached_venv("demo", sys.executable, ["lokki-demo-0"], RuntimeError, progress=said.append) == venv
    assert said == []  # built already: nothing to say
