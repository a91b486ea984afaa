"""The emulator's building blocks, no engine: process groups, records, the plugin wheel, settings."""

from __future__ import annotations

import ast
import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokki_sam.emulator import control, engines, plugin, process, python, state
from lokki_sam.emulator.errors import EmulatorError


def test_stop_group_ends_the_leader_and_the_children_it_left_behind(tmp_path: Path) -> None:
    # A leader that ignores SIGTERM and a child of it: both must be gone afterwards.
    script = "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    script += "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    script += "print(child.pid, flush=True); time.sleep(60)"
    leader = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True, cwd=tmp_path
    )
    assert leader.stdout is not None
    child_pid = int(leader.stdout.readline())
    identity = process.identify(leader.pid)
    assert identity is not None and process.alive(identity)
    assert set(process.group_members(leader.pid)) == {leader.pid, child_pid}
    began = time.monotonic()
    process.stop_group(identity, tmp_path, grace=0.5)
    assert time.monotonic() - began < 10
    assert process.group_members(leader.pid) == []
    assert process.started_at(leader.pid) is None and process.started_at(child_pid) is None
    leader.wait(timeout=5)  # stop_group reaped it already (it is our child)


def test_a_recycled_pid_is_not_the_emulator_and_its_group_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True, cwd=tmp_path
    )
    try:
        real = process.started_at(other.pid)
        assert real is not None
        older = process.Identity(other.pid, real - 100.0, process.boot_id())  # an older process with this pid
        assert not process.alive(older)
        process.stop_group(older, tmp_path, grace=0.5)
        assert other.poll() is None  # not ours: untouched
    finally:
        other.kill()
        other.wait()
    assert process.started_at(other.pid) is None


@pytest.fixture
def orphan(tmp_path: Path) -> Iterator[tuple[int, process.Identity, Path]]:
    """A process left in a process group whose leader has exited: (its pid, the leader as it was
    when alive, the folder it works in). Nothing of lokki-sam started either."""
    home = tmp_path / "engine"
    home.mkdir()
    script = "import subprocess, sys; "
    script += "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    script += "print(child.pid, flush=True); sys.stdin.read()"  # exits when its stdin closes
    leader = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, cwd=home
    )
    assert leader.stdin is not None and leader.stdout is not None
    pid = int(leader.stdout.readline())
    identity = process.identify(leader.pid)
    assert identity is not None
    leader.stdin.close()
    leader.wait(timeout=10)
    assert process.group_members(leader.pid) == [pid]  # the leader is gone, its child is left
    try:
        yield pid, identity, home
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # the test started it: ended by its own pid


def test_a_stale_record_never_signals_a_process_whose_identity_is_not_proven(
    orphan: tuple[int, process.Identity, Path], tmp_path: Path
) -> None:
    """The group's leader is gone, so the record can prove nothing through it: each member must
    itself be proven (same boot, started no earlier than the recorded start, inside the engine's
    folder) or be left alone."""
    pid, leader, home = orphan
    stale = [
        process.Identity(leader.pid, leader.started, "another-boot"),  # a record from before a reboot
        process.Identity(leader.pid, leader.started, ""),  # a record that names no boot
        process.Identity(leader.pid, leader.started + 3600, leader.boot),  # the member is older than the record
    ]
    for record in stale:
        process.stop_group(record, home, grace=0.5)
        assert process.started_at(pid) is not None, record
    process.stop_group(leader, tmp_path / "elsewhere", grace=0.5)  # it does not work in the engine's folder
    assert process.started_at(pid) is not None
    # Proven: same boot, started after the recorded start, in the engine's folder: a leftover worker.
    process.stop_group(leader, home, grace=0.5)
    assert process.started_at(pid) is None


def test_emulator_stop_with_a_stale_record_leaves_foreign_processes_alone(
    orphan: tuple[int, process.Identity, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, leader, home = orphan
    monkeypatch.setenv("LOKKI_SAM_STATE", str(tmp_path / "state"))
    # A record an older lokki-sam wrote (no boot id) naming the group id the foreign session now uses.
    state.Record("ministack", "1", leader.pid, leader.started - 1, 0.0, 4566, "3.11", "/venv", "/log", str(home)).save()
    with pytest.raises(EmulatorError, match="ministack was not running"):
        control.stop("ministack")
    assert process.started_at(pid) is not None
    assert state.load("ministack") is None  # the stale record is gone


def test_a_running_engine_recorded_by_an_older_lokki_sam_is_still_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its record names no boot; the process with that pid and start time working in the
    record's own folder proves it is the engine, so `stop` ends it rather than leaking it."""
    home = tmp_path / "engine"
    home.mkdir()
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True, cwd=home)
    try:
        me = process.identify(engine.pid)
        assert me is not None
        monkeypatch.setenv("LOKKI_SAM_STATE", str(tmp_path / "state"))
        state.Record("ministack", "1", me.pid, me.started, 0.0, 4566, "3.11", "/venv", "/log", str(home)).save()
        assert [s.state for s in control.status() if s.engine == "ministack"] == ["running"]
        assert [r.pid for r in control.stop("ministack")] == [engine.pid]
        assert engine.wait(timeout=30) is not None
    finally:
        engine.kill()
        engine.wait()


def test_port_free_tells_a_listening_port_from_a_free_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not process.port_free(sock.getsockname()[1])
    assert process.port_free(process.free_port())


def test_records_round_trip_and_a_damaged_one_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKKI_SAM_STATE", str(tmp_path))
    record = state.Record("ministack", "1", 42, 1.5, 2.5, 4566, "3.11", "/venv", "/log", "/work")
    record.save()
    assert state.load("ministack") == record
    assert record.endpoint == "http://127.0.0.1:4566"
    state.record_path("ministack").write_text("{not json")
    assert state.load("ministack") is None
    assert not state.record_path("ministack").exists()
    record.save()
    record.forget()
    assert state.load("ministack") is None


def test_state_root_follows_xdg_and_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOKKI_SAM_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state.emulators_dir() == tmp_path / "xdg" / "lokki-sam" / "emulators"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state.emulators_dir() == tmp_path / ".local" / "state" / "lokki-sam" / "emulators"


def test_the_plugin_wheel_carries_the_executor_and_its_entry_point(tmp_path: Path) -> None:
    wheel = plugin.build_wheel(tmp_path)
    version = plugin.plugin_version()
    assert wheel.name == f"lokki_sam_localstack-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"lokki_sam_localstack-{version}.dist-info"
        modules = {"plugin.py", "executor.py", "bootstrap.py", "runtime_api.py", "worker.py", "runtimes.py"}
        modules |= {"sandbox.py", "pool.py", "map_concurrency.py"}
        assert {f"lokki_sam_localstack/{m}" for m in modules} <= names
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        assert "[localstack.lambda.runtime_executor]\nlokki-host = lokki_sam_localstack.plugin:HostExecutorPlugin" in (
            entry_points
        )
        # pip refuses a wheel whose RECORD does not match its files.
        for path, digest, size in csv.reader(io.StringIO(archive.read(f"{info}/RECORD").decode())):
            if path.endswith("RECORD"):
                continue
            data = archive.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data)), path
        assert "[localstack.aws.provider]\nbatch:default = lokki_sam_localstack_batch.provider:batch" in entry_points
        for kind in ("computeenvironment", "jobqueue", "jobdefinition"):
            assert f"aws::batch::{kind} = lokki_sam_localstack_batch.resources:" in entry_points
        batch = {"__init__.py", "provider.py", "jobs.py", "resources.py", "images.py"}
        assert {p for p in names if not p.startswith(info)} == {f"lokki_sam_localstack/{m}" for m in modules} | {
            "lokki_sam_localstack/__init__.py"
        } | {f"lokki_sam_localstack_batch/{m}" for m in batch}


def test_the_plugin_imports_only_the_stdlib_localstack_and_itself() -> None:
    """It runs in LocalStack's venv, where there is no lokki-sam (Batch uses the moto LocalStack bundles)."""
    for name, source in plugin.all_sources().items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                top = (node.module or "").split(".")[0]
            elif isinstance(node, ast.Import):
                top = node.names[0].name.split(".")[0]
            else:
                continue
            allowed = ("localstack", "__future__", *(("moto",) if name.startswith(plugin.BATCH_PACKAGE) else ()))
            assert top in sys.stdlib_module_names or top in allowed, (name, top)


def test_the_localstack_environment_listens_on_loopback_and_selects_the_executor(tmp_path: Path) -> None:
    engine = engines.get_engine("localstack")
    env = engine.environment(tmp_path / "venv", 4599, tmp_path / "work")
    assert env["GATEWAY_LISTEN"] == env["LOCALSTACK_HOST"] == "127.0.0.1:4599"
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == plugin.EXECUTOR_NAME
    assert (env["DNS_ADDRESS"], env["DISABLE_EVENTS"]) == ("0", "1")
    assert env["HOME"] == str(tmp_path / "work" / "home") and env["TMP"] == str(tmp_path / "work" / "tmp")
    assert "TMPDIR" not in env  # LocalStack warns about it; tempfile reads TMP too
    assert not any(k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "VIRTUAL_ENV")) for k in env)
    assert json.loads(env["LOKKI_EMULATOR_PYTHONS"])[python.current()] == sys.executable
    ministack = engines.get_engine("ministack").environment(tmp_path / "venv", 4600, tmp_path / "work")
    assert (ministack["BIND_HOST"], ministack["GATEWAY_PORT"]) == ("127.0.0.1", "4600")


def test_venv_names_change_with_the_pins() -> None:
    localstack = engines.get_engine("localstack")
    assert localstack.venv_name("3.13").startswith("localstack-4.14.0-py3.13-")
    assert localstack.venv_name("3.13") != engines.get_engine("ministack").venv_name("3.13")
    assert "localstack-core[runtime]==4.14.0" in localstack.installs()


def test_ministack_takes_its_python_from_the_templates_runtime(tmp_path: Path) -> None:
    ministack = engines.get_engine("ministack")
    assert ministack.default_python(tmp_path) == python.current()
    (tmp_path / "template.yaml").write_text("Globals:\n  Function:\n    Runtime: python3.12\n")
    assert ministack.default_python(tmp_path) == "3.12"
    assert engines.get_engine("localstack").default_python(tmp_path) == "3.13"


def test_python_versions_are_checked_and_found(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmulatorError, match="'3' is not a Python version"):
        python.version_tuple("3")
    with pytest.raises(EmulatorError, match=r"localstack 4\.14\.0 needs Python >= 3\.13, not 3\.12"):
        engines.get_engine("localstack").check_python("3.12")
    assert python.find_python(python.current()) == sys.executable
    found = python.discover_all()
    assert found[python.current()] == sys.executable
    for version, path in found.items():
        assert os.access(path, os.X_OK), version


def test_an_installed_lokki_sam_carries_the_executor_it_installs_into_localstack(tmp_path: Path) -> None:
    """`emulator start` works from a wheel install, not only from a checkout: the plugin's source
    is package data of lokki_sam, read through importlib.resources."""
    from tests.support.lokki_wheel import build_wheel

    (wheel,) = build_wheel(tmp_path).glob("lokki_sam-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.rsplit("/", 1)[-1]: archive.read(name)
            for name in archive.namelist()
            if name.startswith("lokki_sam/emulator/localstack_executor/")
        }
    assert shipped == plugin.sources()
