"""Ctrl-C during a local run: the map stops promptly, exit code 130, and the run resumes.

The items in flight are held until the process has the signal (tests/support/signals.py), so the
test does not depend on how long anything takes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import LOKKI_SAM, lokki_env
from tests.support.signals import HELD_MAP


def calls_of(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("executor", ["auto", "threads", "processes"])
def test_ctrl_c_stops_the_map_and_the_run_resumes(tmp_path: Path, executor: str) -> None:
    (tmp_path / "slow.py").write_text(HELD_MAP)
    (tmp_path / "hold").touch()
    env = lokki_env(tmp_path)
    proc = subprocess.Popen(
        [LOKKI_SAM, "run", "slow.py", "--store", "runs", "-q", "--executor", executor],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # a safety net only: the wait ends on the event
    while len(calls_of(tmp_path)) < 2:  # both workers are in `slow`, held
        assert proc.poll() is None and time.monotonic() < deadline, "the map never got under way"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert (tmp_path / "signalled").exists()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume slowflow-" in err and "Traceback" not in err
    calls_before = len(calls_of(tmp_path))
    assert calls_before < 40  # the map did not run to the end after Ctrl-C
    (tmp_path / "hold").unlink()
    run_id = next((tmp_path / "runs").iterdir()).name
    resumed = subprocess.run(
        [LOKKI_SAM, "run", "slow.py", "--store", "runs", "-q", "--resume", run_id, "--executor", executor],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(sum(range(40)))
    calls = calls_of(tmp_path)
    assert sorted(set(map(int, calls))) == list(range(40))
    # Only items in flight at the interrupt (at most one per worker) ran twice.
    assert len(calls) - 40 <= 2
