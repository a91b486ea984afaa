"""What a deployed step logs (lokki_sam/runlog.py): a record at each invocation's start, end and
failure with the run's fields; the user's own records during a step carry them too. In process
on moto's Step Functions with the real handler; in a subprocess as an emulator runs it (lokki-sam
writes the JSON lines); and through the real Lambda runtime's JSON formatter (awslambdaric)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import flow, runlog, step
from tests.support.lambda_image import AWSLAMBDARIC_VERSION
from tests.support.moto_sfn import moto_cloud
from tests.support.venvs import cached_venv

REPO = Path(__file__).resolve().parent.parent
USER_LOG = logging.getLogger("tests.user_step")


@step
def numbers(n: int = 6) -> list[int]:
    return list(range(n))


@step
def doubled(x: int, bad: int = -1) -> int:
    USER_LOG.info("doubling %s", x)
    if x == bad:
        raise RuntimeError(f"item {x} is bad")
    return 2 * x


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@flow
def logged(n: int = 6, bad: int = -1):
    return numbers(n=n).map(doubled, batch_size=2).agg(total)


def lokki_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "lokki_sam"]


def test_every_invocation_logs_its_start_and_end_with_the_runs_fields(caplog: pytest.LogCaptureFixture) -> None:
    graph = logged.graph
    with moto_cloud() as cloud, caplog.at_level(logging.INFO):
        execution = cloud.execute(graph, {"n": 6})
    assert execution.status == "SUCCEEDED"
    records = lokki_records(caplog)
    assert {r.run_id for r in records} == {execution.run_id}  # type: ignore[attr-defined]
    assert {r.execution for r in records} == {execution.run_id}  # type: ignore[attr-defined]
    assert {r.flow for r in records} == {"logged"}  # type: ignore[attr-defined]
    finished = [r for r in records if r.getMessage() == runlog.FINISHED]
    started = [r for r in records if r.getMessage() == runlog.STARTED]
    assert len(started) == len(finished) == 1 + 3 + 1  # the source, three batches of two, the agg
    batches = sorted(r.items for r in finished if r.node == "doubled")  # type: ignore[attr-defined]
    assert batches == [[[0, 1]], [[2, 3]], [[4, 5]]]
    assert all(r.map == "map-doubled" and r.item_count == 2 for r in finished if r.node == "doubled")  # type: ignore[attr-defined]
    source = next(r for r in finished if r.node == "numbers")  # type: ignore[attr-defined]
    assert source.item_count == 6 and source.bytes_written > 0 and source.s3_requests > 0  # type: ignore[attr-defined]
    agg = next(r for r in finished if r.node == "total")  # type: ignore[attr-defined]
    assert agg.bytes_read > 0 and agg.seconds >= 0 and agg.peak_memory_mb > 0  # type: ignore[attr-defined]
    # The step's own logging, made while it ran, carries the run's fields and its items.
    user = [r for r in caplog.records if r.name == USER_LOG.name]
    assert sorted(r.getMessage() for r in user) == [f"doubling {x}" for x in range(6)]
    by_item = {int(r.getMessage().split()[-1]): r for r in user}
    assert by_item[3].run_id == execution.run_id and by_item[3].items == [[2, 3]]  # type: ignore[attr-defined]
    assert by_item[3].node == "doubled"  # type: ignore[attr-defined]


def test_a_failure_is_logged_with_its_error_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with moto_cloud() as cloud, caplog.at_level(logging.INFO):
        execution = cloud.execute(logged.graph, {"n": 6, "bad": 3})
    assert execution.status == "FAILED"
    (failed,) = [r for r in lokki_records(caplog) if r.getMessage() == runlog.FAILED]
    assert failed.levelno == logging.ERROR and failed.items == [[2, 3]]  # type: ignore[attr-defined]
    assert failed.error == "RuntimeError: item 3 is bad"  # type: ignore[attr-defined]
    assert failed.exc_info is not None and "raise RuntimeError" in logging.Formatter().formatException(failed.exc_info)
    finished = [getattr(r, "items", None) for r in lokki_records(caplog) if r.getMessage() == runlog.FINISHED]
    assert [[2, 3]] not in finished


SCRIPT = """
import json, logging, sys
from lokki_sam import runlog
{setup}
runlog.configure(dict(__import__("os").environ))
user = logging.getLogger("user")
with runlog.step_scope({{"run_id": "r-1", "execution": "r-1.resume-1", "node": "n", "items": [[4, 7]]}}):
    user.info("inside %d", 1)
user.info("outside")
try:
    with runlog.step_scope({{"run_id": "r-1", "node": "m"}}):
        raise KeyError("k")
except KeyError:
    pass
"""


def run_script(tmp_path: Path, python: str, setup: str = "", **env: str) -> list[dict[str, Any]]:
    script = tmp_path / "step.py"
    script.write_text(SCRIPT.format(setup=textwrap.dedent(setup)))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA_", "LOKKI_"))} | env
    environ["PYTHONPATH"] = str(REPO)
    done = subprocess.run([python, str(script)], capture_output=True, text=True, env=environ, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_where_the_platform_ignores_log_format_lokki_sam_writes_the_json_lines(tmp_path: Path) -> None:
    lines = run_script(tmp_path, sys.executable)
    messages = [(line["message"], line.get("node")) for line in lines]
    assert messages == [
        (runlog.STARTED, "n"),
        ("inside 1", "n"),
        (runlog.FINISHED, "n"),
        ("outside", None),  # after the step: no run fields
        (runlog.STARTED, "m"),
        (runlog.FAILED, "m"),
    ]
    inside = lines[1]
    assert inside["run_id"] == "r-1" and inside["execution"] == "r-1.resume-1" and inside["items"] == [[4, 7]]
    assert inside["level"] == "INFO" and inside["logger"] == "user" and inside["timestamp"].endswith("Z")
    failed = lines[-1]
    assert failed["errorType"] == "KeyError" and failed["error"] == "KeyError: 'k'"
    assert any("raise KeyError" in frame for frame in failed["stackTrace"])
    quiet = run_script(tmp_path, sys.executable, LOKKI_LOG_LEVEL="WARNING")
    assert [line["message"] for line in quiet] == [runlog.FAILED]


@pytest.fixture(scope="module")
def awslambdaric_python() -> str:
    venv = cached_venv(
        f"awslambdaric-{AWSLAMBDARIC_VERSION}-py{sys.version_info.major}.{sys.version_info.minor}",
        sys.executable,
        [f"awslambdaric=={AWSLAMBDARIC_VERSION}"],
        RuntimeError,
    )
    return str(venv / "bin" / "python")


def test_lambdas_own_json_format_writes_every_field(awslambdaric_python: str, tmp_path: Path) -> None:
    """Under LogFormat JSON, Lambda's Python runtime formats the records (awslambdaric's
    JsonFormatter on the root logger): lokki-sam leaves it in place and its fields come out."""
    platform = """
        from awslambdaric.lambda_runtime_log_utils import JsonFormatter
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel("INFO")
    """
    lines = run_script(tmp_path, awslambdaric_python, platform, AWS_LAMBDA_LOG_FORMAT="JSON")
    assert [line["message"] for line in lines] == [
        runlog.STARTED,
        "inside 1",
        runlog.FINISHED,
        "outside",
        runlog.STARTED,
        runlog.FAILED,
    ]
    assert lines[1]["run_id"] == "r-1" and lines[1]["items"] == [[4, 7]] and lines[1]["logger"] == "user"
    assert {"seconds", "s3_requests", "bytes_read", "bytes_written"} <= set(lines[2])
    assert lines[-1]["errorType"] == "KeyError" and lines[-1]["error"] == "KeyError: 'k'"


PEAKS = """
import json, logging, os, subprocess, sys
from lokki_sam import runlog
runlog.configure(dict(os.environ))

def touch(mb):
    block = bytearray(mb * 1024 * 1024)
    block[::4096] = b"\\x01" * len(range(0, len(block), 4096))  # resident, not just reserved
    return block

if sys.argv[1] == "warm":  # one worker, two invocations: a large one, then a small one
    with runlog.step_scope({"node": "large"}):
        block = touch(300)
    del block
    with runlog.step_scope({"node": "small"}):
        pass
else:  # a worker started by a large process (an emulator's), then one small invocation
    block = touch(300)
    sys.stdout.flush()
    child = "from lokki_sam import runlog; import os; runlog.configure(dict(os.environ))\\n"
    child += "with runlog.step_scope({'node': 'child'}): pass"
    subprocess.run([sys.executable, "-c", child], check=True)
"""


@pytest.mark.cli  # fresh interpreters: a process's peak is the figure under test
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-invocation peak uses /proc (Lambda is Linux)")
@pytest.mark.parametrize("how", ["warm", "forked"])
def test_each_invocation_reports_its_own_peak_memory(tmp_path: Path, how: str) -> None:
    """ru_maxrss carries a warm worker's earlier peak, and a large parent's, into every invocation."""
    script = tmp_path / "peaks.py"
    script.write_text(PEAKS)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA_", "LOKKI_"))}
    done = subprocess.run(
        [sys.executable, str(script), how], capture_output=True, text=True, timeout=120,
        env=environ | {"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    finished = {
        line["node"]: line for line in map(json.loads, done.stdout.splitlines()) if line["message"] == runlog.FINISHED
    }
    small = finished["small" if how == "warm" else "child"]
    assert "peak_memory_scope" not in small  # the invocation's own figure
    assert 0 < small["peak_memory_mb"] < 150
    if how == "warm":
        assert finished["large"]["peak_memory_mb"] >= 300


def test_without_a_peak_reset_the_process_peak_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/self/clear_refs cannot be written (not Linux, a locked-down /proc): simulated by
    pointing the reset at a path that cannot be opened."""
    monkeypatch.setattr(runlog.PeakMemory, "CLEAR_REFS", "/nonexistent/clear_refs")
    figures = runlog.PeakMemory().figures()
    assert figures["peak_memory_scope"] == "process" and figures["peak_memory_mb"] > 0


def test_logs_shows_a_cloud_failure_from_the_users_frames(caplog: pytest.LogCaptureFixture) -> None:
    """The record the runtime logs for a failed step (real handler, moto's Step Functions), as the
    JSON lines a platform writes, read back by `lokki-sam logs`: the traceback starts at the step."""
    from lokki_sam.cli.logs import render

    with moto_cloud() as cloud, caplog.at_level(logging.INFO):
        cloud.execute(logged.graph, {"n": 4, "bad": 1})
    (failed,) = [r for r in lokki_records(caplog) if r.getMessage() == runlog.FAILED]
    record = json.loads(runlog.JsonLines().format(failed))
    assert any("lokki_sam" in frame for frame in record["stackTrace"])  # the record keeps every frame
    shown = render(record).splitlines()
    assert shown[1].strip() == "RuntimeError: item 1 is bad"
    frames = [line.strip() for line in shown[2:] if line.strip().startswith("File ")]
    assert frames and all("lokki_sam" not in frame for frame in frames)
    assert frames[0].endswith(", in doubled") and "test_runlog.py" in frames[0]
    assert "raise RuntimeError" in shown[-1]


@pytest.mark.parametrize(
    ("filename", "own"),
    [
        ("/opt/python/lokki_sam/runtime.py", True),
        ("/work/site-packages/lokki_sam/cli/logs.py", True),
        ("C:\\\\py\\\\Lib\\\\lokki_sam\\\\execution.py", True),
        ("/var/task/flows.py", False),
        ("/home/me/lokki_sam_demo/flow.py", False),
        ("/home/me/lokki_sam.py", False),
    ],
)
def test_lokki_sams_own_files_are_told_apart_by_their_folder(filename: str, own: bool) -> None:
    from lokki_sam.tracebacks import is_own_file, user_frames

    assert is_own_file(filename) is own
    frames = [f'  File "{filename}", line 3, in f\n    x()\n', '  File "/var/task/app.py", line 9, in g\n']
    assert user_frames(frames) == frames[own:]
