"""What local runs report at each log level, in each format: the reporters, then the CLI choosing them."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import Retry, flow, run_flow, step
from lokki_sam.progress import DEBUG, ERROR, INFO, QUIET, WARNING, JsonReporter, MapProgress, Reporter, RichReporter

Lokki = Callable[..., subprocess.CompletedProcess[str]]


class Boom(ValueError):
    pass


_failed_once: set[str] = set()


@step
def items(n: int = 20) -> list[int]:
    return list(range(n))


@step(retry=Retry(retries=1, interval=0, exceptions=(Boom,)))
def work(x: int, tag: str = "t") -> int:
    if x == 3 and tag not in _failed_once:
        _failed_once.add(tag)
        raise Boom(f"[item {x}] first try fails")  # brackets: shown as written, not as markup
    if x == 7:
        raise ValueError("item 7 always fails")
    return x


@step
def add(xs: list[int]) -> int:
    return sum(xs)


@flow
def noisy(n: int = 20, tag: str = "t"):
    return items(n=n).map(work, tolerated_failure_count=1).agg(add)


def run_with(reporter: Reporter, tmp_path: Path, tag: str, executor: str = "threads") -> int:
    reporter.config_warning("lokki.toml: [batch] vcpu has no meaning in lokki-sam: every step runs on Lambda")
    result = run_flow(
        noisy, {"tag": tag}, store=tmp_path / "runs", reporter=reporter, sleep=lambda _: None, executor=executor
    ).result
    reporter.close()
    assert result == sum(range(20)) - 7
    return int(result)


def json_events(
    level: int, tmp_path: Path, tag: str, interval: int = 10, executor: str = "threads"
) -> list[dict[str, Any]]:
    stream = io.StringIO()
    run_with(JsonReporter(stream, level=level, progress_interval=interval), tmp_path, f"{tag}-{executor}", executor)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# ------------------------------------------------------------------------------- JSON lines


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_json_info_reports_the_run_steps_and_map_progress_every_interval(tmp_path: Path, executor: str) -> None:
    """The same events whichever executor runs the map: a worker process's retries and failures
    are reported by the runner."""
    events = json_events(INFO, tmp_path, "json-info", interval=25, executor=executor)
    names = [e["event"] for e in events]
    assert names[0] == "config_warning" and names[1] == "run_started" and names[-1] == "run_finished"
    assert {"step_started", "step_finished", "map_started", "map_finished", "step_retry", "items_failed"} <= set(names)
    progress = [(e["done"], e["percent"]) for e in events if e["event"] == "map_progress"]
    assert progress == [(5, 25), (10, 50), (15, 75), (20, 100)]  # one line per 25 % of 20 items
    assert [e["failed"] for e in events if e["event"] == "map_progress"][-1] == 1


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_json_debug_adds_a_progress_line_per_batch(tmp_path: Path, executor: str) -> None:
    events = json_events(DEBUG, tmp_path, "json-debug", interval=50, executor=executor)
    assert [e["done"] for e in events if e["event"] == "map_progress"] == list(range(1, 21))


def test_json_warning_and_error_levels_keep_only_those_events(tmp_path: Path) -> None:
    warning = {e["event"] for e in json_events(WARNING, tmp_path, "json-warning")}
    assert warning == {"config_warning", "step_retry", "items_failed"}
    error = {e["event"] for e in json_events(ERROR, tmp_path, "json-error")}
    assert error == {"items_failed"}


# ------------------------------------------------------------------------------ human lines


def human_lines(level: int, tmp_path: Path, tag: str, capsys: pytest.CaptureFixture[str], **options: Any) -> str:
    run_with(RichReporter(level=level, **options), tmp_path, tag)
    captured = capsys.readouterr()
    assert captured.out == ""  # progress never reaches stdout
    return captured.err


def test_human_info_in_a_log_prints_progress_lines_not_a_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = human_lines(INFO, tmp_path, "human-info", capsys, progress_interval=50)
    assert "running flow noisy" in err and "succeeded run noisy-" in err
    assert "✓ items" in err and "✓ add" in err
    assert re.findall(r"map-work (\d+)/20 \((\d+)%\)", err) == [("10", "50"), ("20", "100")]
    assert "map-work 20/20 (100%), 1 failed" in err
    assert "↻ work item 3: Boom: [item 3] first try fails (retry 1 in 0.0s)" in err
    assert "✗ map-work item 7: ValueError: item 7 always fails" in err
    assert "warning: lokki.toml: [batch] vcpu has no meaning" in err
    assert "started" not in err and "━" not in err


def test_human_debug_adds_step_starts_and_every_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = human_lines(DEBUG, tmp_path, "human-debug", capsys)
    assert "→ items started" in err and "→ add started" in err
    assert "map-work: 20 items in 20 batches" in err
    assert len(re.findall(r"map-work \d+/20", err)) == 20


def test_human_warning_and_error_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warning = human_lines(WARNING, tmp_path, "human-warning", capsys).splitlines()
    assert [line.split(":")[0].strip() for line in warning] == ["warning", "↻ work item 3", "✗ map-work item 7"]
    error = human_lines(ERROR, tmp_path, "human-error", capsys).splitlines()
    assert error == ["  ✗ map-work item 7: ValueError: item 7 always fails"]


def test_timestamps_start_each_human_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = human_lines(INFO, tmp_path, "human-time", capsys, timestamps=True)
    lines = err.splitlines()
    assert lines and all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), err


@pytest.mark.parametrize(
    ("total", "done", "interval", "steps", "due"),
    [
        (10, 0, 30, [1] * 10, [3, 6, 9, 10]),  # every 30 %, and the last item
        (3, 0, 10, [1, 1, 1], [1, 2, 3]),  # fewer items than intervals: every item
        (100, 50, 20, [10] * 5, [60, 80, 100]),  # a resumed map counts from what was done
        (1000, 0, 10, [250] * 4, [250, 500, 750, 1000]),  # big batches cross several thresholds once
    ],
)
def test_map_progress_is_due_each_interval(
    total: int, done: int, interval: int, steps: list[int], due: list[int]
) -> None:
    progress = MapProgress(total, done, interval)
    shown = [progress.done for n in steps if progress.advance(n, failed=False)]
    assert shown == due


# ---------------------------------------------------------------------- the CLI's choice


FLOW = """
from lokki_sam import Retry, flow, step

@step
def nums(n: int = 4) -> list[int]:
    return list(range(n))

@step(retry=Retry(retries=1, interval=0))
def flaky(x: int, marker: str = "") -> int:
    import os
    if x == 1 and marker and not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("once")
    return x * 10

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def levels(n: int = 4, marker: str = ""):
    return nums(n=n).map(flaky).agg(total)
"""


@pytest.fixture
def levels_flow(tmp_path: Path) -> Path:
    path = tmp_path / "levels.py"
    path.write_text(FLOW)
    return path


def test_config_log_level_and_format_choose_the_reporter(lokki: Lokki, levels_flow: Path, tmp_path: Path) -> None:
    marker = str(tmp_path / "m1")
    warning = lokki("run", "levels.py", "-p", f"marker={marker}", LOKKI_LOG_LEVEL="warning")
    assert warning.returncode == 0 and warning.stdout == "60\n", warning.stderr
    assert warning.stderr.startswith("  ↻ flaky item 1: ConnectionError: once") and "✓" not in warning.stderr
    (tmp_path / "lokki.toml").write_text('[logging]\nformat = "json"\nprogress_interval = 50\n')
    as_json = lokki("run", "levels.py")
    events = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert [e["percent"] for e in events if e["event"] == "map_progress"] == [50, 100]
    assert as_json.stdout == "60\n"  # log_format changes the log lines; --json also the result


def test_flags_win_over_the_config(lokki: Lokki, levels_flow: Path, tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text('log_level = "ERROR"\nlog_format = "json"\n')
    verbose = lokki("run", "levels.py", "-v")
    names = [json.loads(line)["event"] for line in verbose.stderr.splitlines()]
    assert names.count("map_progress") == 4 and "step_started" in names
    quiet = lokki("run", "levels.py", "-q", LOKKI_LOG_LEVEL="DEBUG")
    assert (quiet.stdout, quiet.stderr) == ("60\n", "")
    (tmp_path / "lokki.toml").write_text('log_level = "ERROR"\n')
    as_json = lokki("run", "levels.py", "--json")
    assert json.loads(as_json.stdout)["result"] == 60 and as_json.stderr == ""  # JSON at the config's level
    both = lokki("run", "levels.py", "-q", "-v")
    assert both.returncode == 2 and "-q (print only the result) and -v (report more) contradict" in both.stderr


def test_quiet_level_builds_no_output() -> None:
    from lokki_sam.progress import make_reporter

    assert type(make_reporter("human", QUIET)) is Reporter
    assert type(make_reporter("json", QUIET)) is Reporter
    assert isinstance(make_reporter("json", INFO), JsonReporter)
