"""The local runner: every flow shape, retries, tolerated failures, batches, errors and resume.

Map tests run under both executors (`executor`): threads, and processes with Python's default
start method (tests/test_executors.py covers the others). Steps count their calls in a file, as
worker processes share no memory with the test.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import Retry, flow, run_flow, step
from lokki_sam.errors import LokkiError, SerializationError, StepFailed
from lokki_sam.execution import MapSourceError
from lokki_sam.graph import MapOptions
from lokki_sam.local import FLUSH_SECONDS, MapFailed
from tests.conftest import LOKKI_SAM, lokki_env
from tests.flows import shapes

EXECUTORS = ["threads", "processes"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("name", sorted(shapes.SHAPES))
def test_every_shape_gives_the_independently_computed_result(name: str, tmp_path: Path, executor: str) -> None:
    flow_obj, params, expected = shapes.SHAPES[name]
    outcome = run_flow(flow_obj, params, store=tmp_path, executor=executor)
    assert outcome.result == expected
    assert outcome.failures == []
    record = json.loads((tmp_path / outcome.run_id / "run.json").read_text())
    assert record["status"] == "succeeded" and record["flow"] == flow_obj.name


def test_items_of_any_picklable_type_pass_through_unchanged(tmp_path: Path, executor: str) -> None:
    result = run_flow(shapes.passthrough, store=tmp_path, executor=executor).result
    expected = shapes.odd_things.func()
    assert result == expected
    assert [type(v) for v in result] == [type(v) for v in expected]  # tuples stay tuples, bytes stay bytes


def test_defaults_apply_and_cli_strings_are_coerced(tmp_path: Path) -> None:
    assert run_flow(shapes.params_by_name, store=tmp_path).result == "x10,x20,x30"
    strings = {"n": "2", "factor": "3", "prefix": "v", "upper": "true"}
    assert run_flow(shapes.params_by_name, strings, store=tmp_path).result == "V3,V6"
    structured = {"n": "3", "weights": '{"sum": 2}', "names": "b,a"}
    assert run_flow(shapes.structured_params, structured, store=tmp_path).result == {"sum": 12.0, "names": ["a", "b"]}


def test_empty_map_runs_agg_on_empty_list(tmp_path: Path, executor: str) -> None:
    assert run_flow(shapes.map_agg, {"n": 0}, store=tmp_path, executor=executor).result == 0
    assert run_flow(shapes.open_map, {"n": 0}, store=tmp_path, executor=executor).result == []


# ------------------------------------------------------------------------ step helpers


def _calls_file() -> Path:
    return Path(os.environ["LOKKI_TEST_CALLS"])


def called(key: str) -> int:
    """Count a call of `key` (in a file: the step may run in a worker process); how many so far."""
    with open(_calls_file(), "a+") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(f"{key}\n")
        log.seek(0)
        return log.read().split().count(key)


def calls() -> Counter[str]:
    path = _calls_file()
    return Counter(path.read_text().split() if path.exists() else [])


def clear_calls() -> None:
    _calls_file().unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _calls_log(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LOKKI_TEST_CALLS", str(tmp_path_factory.mktemp("calls") / "calls.log"))
    yield


@step
def items(n: int = 10) -> list[int]:
    return list(range(n))


@step
def add_all(xs: list[int]) -> int:
    return sum(xs)


@step
def collect(xs: list[int]) -> list[int]:
    return xs


@step(retry=Retry(retries=3, interval=2, backoff=3, max_delay=10, exceptions=(ValueError,)))
def flaky(x: int, fail_times: int = 2) -> int:
    if called(f"flaky-{x}") <= fail_times:
        raise ValueError(f"transient {x}")
    return x


@step(retry=Retry(retries=3, interval=1, exceptions=(ValueError,)))
def wrong_kind(x: int) -> int:
    called("wrong_kind")
    raise TypeError("not retried")


@step
def fail_on(x: int, bad: list[int] | None = None) -> int:
    called(f"item-{x}")
    if x in (bad or []):
        raise RuntimeError(f"item {x} is bad")
    return x


# ---------------------------------------------------------------------------- retries


def test_retry_waits_follow_interval_backoff_and_max_delay(tmp_path: Path) -> None:
    @flow
    def retried(fail_times: int = 3):
        return shapes.start(value=5).next(flaky)

    waits: list[float] = []
    assert run_flow(retried, store=tmp_path, sleep=waits.append).result == 5
    assert calls()["flaky-5"] == 4
    # 3 failures, 3 retries: waits 2, 2*3=6, min(18, 10)=10
    assert waits == [2, 6, 10]


def test_retry_in_a_map_is_per_batch(tmp_path: Path, executor: str) -> None:
    @flow
    def retried_map(fail_times: int = 1):
        return items(n=3).map(flaky).agg(add_all)

    waits: list[float] = []
    assert run_flow(retried_map, store=tmp_path, executor=executor, sleep=waits.append).result == 3
    assert waits == [2, 2, 2]
    assert calls() == {"flaky-0": 2, "flaky-1": 2, "flaky-2": 2}


def test_retries_exhausted_fail_the_step(tmp_path: Path, executor: str) -> None:
    @flow
    def exhausted(fail_times: int = 99):
        return items(n=1).map(flaky).agg(add_all)

    waits: list[float] = []
    with pytest.raises(MapFailed, match=r"item 0: ValueError: transient 0"):
        run_flow(exhausted, store=tmp_path, executor=executor, sleep=waits.append)
    assert calls()["flaky-0"] == 4  # first attempt + 3 retries
    assert waits == [2, 6, 10]


def test_exception_filter_does_not_retry_other_errors(tmp_path: Path) -> None:
    @flow
    def unfiltered():
        return items(n=1).next(wrong_kind)

    waits: list[float] = []
    with pytest.raises(StepFailed, match=r"step 'wrong_kind' failed: TypeError: not retried"):
        run_flow(unfiltered, store=tmp_path, sleep=waits.append)
    assert calls()["wrong_kind"] == 1 and waits == []


# -------------------------------------------------------------- failures and tolerance


def test_failing_step_names_step_item_and_run_id(tmp_path: Path, executor: str) -> None:
    @flow
    def failing(bad: list[int] | None = None):
        return items(n=5).map(fail_on).agg(add_all)

    with pytest.raises(MapFailed) as info:
        run_flow(failing, {"bad": [3]}, store=tmp_path, executor=executor, run_id="fail-run")
    text = info.value.render()
    assert "map 'map-fail_on' failed: 1 of 5 item(s) failed, no failures tolerated" in text
    assert "item 3: RuntimeError: item 3 is bad (step 'fail_on')" in text
    assert "run fail-run" in text and "--resume fail-run" in text
    assert info.value.exit_code == 1
    (failure_file,) = (tmp_path / "fail-run").glob("step=fail_on/failures/00000003-*.json")
    failure = json.loads(failure_file.read_text())
    assert failure["items"] == [3] and failure["error"] == "RuntimeError"
    assert "raise RuntimeError" in failure["traceback"]
    record = json.loads((tmp_path / "fail-run/run.json").read_text())
    assert record["status"] == "failed"


def test_failure_in_an_inner_chain_names_the_failing_step(tmp_path: Path, executor: str) -> None:
    @step
    def reject_odd(x: int) -> int:
        if x % 2:
            raise ValueError(f"{x} is odd")
        return x

    @flow
    def inner():
        return items(n=4).map(shapes.inc, concurrency=1).next(reject_odd).agg(add_all)

    with pytest.raises(MapFailed) as info:
        run_flow(inner, store=tmp_path, executor=executor)
    assert {f.step for f in info.value.failures} == {"reject_odd"}
    assert "item 0: ValueError: 1 is odd (step 'reject_odd')" in info.value.render()


def test_failing_task_outside_map(tmp_path: Path) -> None:
    @step
    def explode(xs: list[int]) -> int:
        raise KeyError("missing column")

    @flow
    def boom():
        return items(n=2).next(explode)

    with pytest.raises(StepFailed, match=r"(?s)run r1: step 'explode' failed: KeyError.*--resume r1"):
        run_flow(boom, store=tmp_path, run_id="r1")


@pytest.mark.parametrize(
    ("options", "bad", "tolerated"),
    [
        ({"tolerated_failure": 20}, [1, 7], True),  # 2 of 10 = 20 %
        ({"tolerated_failure": 20}, [1, 2, 7], False),
        ({"tolerated_failure_count": 2}, [0, 9], True),
        ({"tolerated_failure_count": 2}, [0, 5, 9], False),
        ({"tolerated_failure": 50, "tolerated_failure_count": 1}, [0, 9], False),
    ],
)
def test_tolerated_failures(
    tmp_path: Path, executor: str, options: dict[str, Any], bad: list[int], tolerated: bool
) -> None:
    @flow
    def tolerant(bad: list[int] | None = None):
        return items(n=10).map(fail_on, concurrency=1, **options).agg(collect)

    if tolerated:
        outcome = run_flow(tolerant, {"bad": bad}, store=tmp_path, executor=executor)
        assert outcome.result == [x for x in range(10) if x not in bad]  # the agg gets the successes
        assert sorted(f.indexes[0] for f in outcome.failures) == bad
        assert {f.step for f in outcome.failures} == {"fail_on"}
    else:
        with pytest.raises(MapFailed, match=r"item\(s\) failed, tolerated: ") as info:
            run_flow(tolerant, {"bad": bad}, store=tmp_path, executor=executor)
        # The map stops as soon as the failures exceed a threshold, and reports them.
        assert not MapOptions(**options).tolerates(len(info.value.failures), 10)
        for index in bad[: len(info.value.failures)]:
            assert f"item {index}: RuntimeError" in info.value.render()


def test_a_failing_item_fails_its_whole_batch(tmp_path: Path, executor: str) -> None:
    @flow
    def batches(bad: list[int] | None = None):
        return items(n=20).map(fail_on, batch_size=5, tolerated_failure=50).agg(collect)

    outcome = run_flow(batches, {"bad": [7]}, store=tmp_path, executor=executor)
    assert outcome.result == [x for x in range(20) if not 5 <= x <= 9]
    (failure,) = outcome.failures
    assert failure.indexes == (5, 6, 7, 8, 9)
    assert calls()["item-8"] == 0  # the batch stops at its failing item, like one Lambda invocation


def test_batch_size_groups_items_per_call_set(tmp_path: Path, executor: str) -> None:
    @step
    def where(x: int) -> int:
        called(f"{x // 10}:{os.getpid()}/{threading.current_thread().name}")
        return x

    @flow
    def grouped():
        return items(n=50).map(where, batch_size=10).agg(add_all)

    assert run_flow(grouped, store=tmp_path, executor=executor).result == sum(range(50))
    workers = Counter(key.split(":")[0] for key in calls())
    assert workers == dict.fromkeys(map(str, range(5)), 1)  # one batch runs in one worker


def test_concurrency_is_honoured(tmp_path: Path, executor: str) -> None:
    active = tmp_path / "active"  # "running peak", under a lock: workers may be processes

    def count(step: int) -> None:
        with open(active, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            running, peak = map(int, (fh.read() or "0 0").split())
            fh.seek(0)
            fh.truncate()
            fh.write(f"{running + step} {max(peak, running + step)}")

    @step
    def busy(x: int) -> int:
        count(+1)
        time.sleep(0.01)
        count(-1)
        return x

    @flow
    def limited():
        return items(n=24).map(busy, concurrency=2).agg(add_all)

    assert run_flow(limited, store=tmp_path, executor=executor).result == sum(range(24))
    assert active.read_text() == "0 2"


def test_map_source_not_a_list(tmp_path: Path) -> None:
    @step
    def not_list() -> dict[str, int]:
        return {"a": 1}

    @flow
    def bad_source():
        return not_list().map(shapes.inc)

    with pytest.raises(MapSourceError, match=r"step 'not_list' feeds \.map\(inc\) but returned dict, not a list"):
        run_flow(bad_source, store=tmp_path)


def test_unserializable_result_names_step_and_type(tmp_path: Path, executor: str) -> None:
    @step
    def make_lock(xs: list[int]) -> Any:
        return threading.Lock()

    @flow
    def unpicklable():
        return items(n=2).next(make_lock)

    with pytest.raises(SerializationError, match=r"result of step 'make_lock' of type lock cannot be serialized"):
        run_flow(unpicklable, store=tmp_path, executor=executor)

    @step
    def lock_per_item(x: int) -> Any:
        return threading.Lock()

    @flow
    def unpicklable_items():
        return items(n=2).map(lock_per_item)

    with pytest.raises(SerializationError, match=r"result of step 'lock_per_item' for map item \d of type lock"):
        run_flow(unpicklable_items, store=tmp_path, executor=executor)


def test_unserializable_map_result_stops_the_map_early(tmp_path: Path, executor: str) -> None:
    @step
    def slow_lock(x: int) -> Any:
        called("slow_lock")
        time.sleep(0.005)
        return threading.Lock()

    @flow
    def stops():
        return items(n=400).map(slow_lock, concurrency=2)

    with pytest.raises(SerializationError, match=r"step 'slow_lock' for map item \d+ of type lock"):
        run_flow(stops, store=tmp_path, executor=executor)
    assert calls()["slow_lock"] < 400  # the remaining work units were cancelled


# ------------------------------------------------------------------------------ resume


def test_resume_recomputes_only_failed_items(tmp_path: Path, executor: str) -> None:
    flag = tmp_path / "broken"
    flag.touch()

    @step
    def sometimes(x: int) -> int:
        called(f"item-{x}")
        if x % 4 == 0 and flag.exists():
            raise RuntimeError("down")
        return x * 10

    @flow
    def resumable(n: int = 12):
        return items(n=n).map(sometimes, tolerated_failure=0).agg(add_all).next(shapes.inc)

    with pytest.raises(MapFailed):
        run_flow(resumable, {"n": 12}, store=tmp_path, executor=executor, run_id="res-1", concurrency=1)
    first = dict(calls())
    flag.unlink()
    clear_calls()
    outcome = run_flow(resumable, store=tmp_path, executor=executor, resume="res-1")
    assert outcome.result == sum(x * 10 for x in range(12)) + 1
    assert outcome.params == {"n": 12}  # the run's own parameters, from run.json
    # Only items that failed (or never ran because the map stopped) are computed again.
    assert set(calls()) == {f"item-{x}" for x in range(12)} - {k for k in first if int(k[5:]) % 4}
    clear_calls()
    again = run_flow(resumable, store=tmp_path, executor=executor, resume="res-1")
    assert again.result == outcome.result and calls() == {}  # everything done: nothing recomputed


def test_resume_errors(tmp_path: Path) -> None:
    run_flow(shapes.map_agg, store=tmp_path, run_id="known")
    with pytest.raises(LokkiError, match=r"no run nope \(no .*nope/run\.json\)[\s\S]*check the run id and --store"):
        run_flow(shapes.map_agg, store=tmp_path, resume="nope")
    with pytest.raises(LokkiError, match=r"run known belongs to flow 'map_agg', not 'linear'"):
        run_flow(shapes.linear, store=tmp_path, resume="known")
    with pytest.raises(LokkiError, match=r"a resume keeps the run's parameters: n=5 \(given 2\)"):
        run_flow(shapes.map_agg, {"n": 2}, store=tmp_path, resume="known")
    assert run_flow(shapes.map_agg, {"n": "5"}, store=tmp_path, resume="known").result == 55  # the same value
    with pytest.raises(LokkiError, match=r"run known already exists[\s\S]*--resume known"):
        run_flow(shapes.map_agg, store=tmp_path, run_id="known")
    with pytest.raises(LokkiError, match=r"invalid run id '\.\./x'"):
        run_flow(shapes.map_agg, store=tmp_path, resume="../x")


KILL_FLOW = """
import os, time
from lokki_sam import flow, step

@step
def items(n: int = 120) -> list[int]:
    return list(range(n))

@step
def slow(x: int) -> int:
    with open(os.environ["CALLS_FILE"], "a") as fh:
        fh.write(f"{x}\\n")
    time.sleep(float(os.environ["ITEM_SECONDS"]))
    return x * x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def killed(n: int = 120):
    return items(n=n).map(slow, concurrency=WORKERS).agg(total)
"""


def test_run_killed_mid_map_resumes_without_recomputing_finished_items(tmp_path: Path, executor: str) -> None:
    workers, n = 4, 120
    module = tmp_path / "killed_flow.py"
    module.write_text(KILL_FLOW.replace("WORKERS", str(workers)))
    calls = tmp_path / "calls.txt"
    # Items slower than the flush interval: each finished item is flushed before the next one
    # starts, so only the item a worker is busy with when killed may run again.
    env = lokki_env(tmp_path, CALLS_FILE=str(calls), ITEM_SECONDS=str(FLUSH_SECONDS + 0.02))
    store = tmp_path / "runs"
    cmd = [LOKKI_SAM, "run", str(module), "--store", str(store), "--executor", executor, "--json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("{"), line + proc.stderr.read()
        started = json.loads(line)
        assert started["event"] == "run_started"
        run_id = started["run_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if calls.exists() and len(calls.read_text().splitlines()) >= n // 3:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = [int(x) for x in calls.read_text().split()]
    assert n // 3 <= len(first) < n  # killed in the middle of the map
    calls.unlink()

    resumed = subprocess.run(
        [*cmd[:-1], "--resume", run_id, "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(sum(x * x for x in range(n)))
    second = [int(x) for x in calls.read_text().split()]
    recomputed = set(first) & set(second)
    assert set(first) | set(second) == set(range(n))
    assert len(second) == len(set(second))
    assert len(recomputed) <= workers, f"recomputed {sorted(recomputed)}"
    assert len(second) <= n - len(first) + workers


RERUN_CALLS: list[str] = []


@step
def rerun_source(n: int = 3) -> list[int]:
    RERUN_CALLS.append("source")
    return list(range(n))


@step
def rerun_body(x: int) -> int:
    RERUN_CALLS.append(f"body-{x}")
    return x + 1


@step
def rerun_total(xs: list[int]) -> int:
    RERUN_CALLS.append("total")
    return sum(xs)


@flow
def rerun_flow(n: int = 3):
    return rerun_source(n=n).map(rerun_body).agg(rerun_total)


def test_rerun_forces_a_step_and_what_follows_and_sticks_to_the_run(tmp_path: Path) -> None:
    first = run_flow(rerun_flow, store=tmp_path, run_id="rr")
    RERUN_CALLS.clear()
    again = run_flow(rerun_flow, store=tmp_path, resume="rr", rerun=["rerun_body"])
    assert again.result == first.result
    assert sorted(RERUN_CALLS) == ["body-0", "body-1", "body-2", "total"]  # not the source
    RERUN_CALLS.clear()
    later = run_flow(rerun_flow, store=tmp_path, resume="rr")  # reuses the rerun's outputs, not the first run's
    assert later.result == first.result and RERUN_CALLS == []
    record = json.loads((tmp_path / "rr" / "run.json").read_text())
    assert record["attempt"] == 2 and record["reruns"] == {"rerun_body": 1, "rerun_total": 1}


@pytest.mark.parametrize(
    ("rerun", "resume", "message"),
    [
        (["nope"], "rr", "--rerun nope: flow 'rerun_flow' has no such step"),
        (["rerun_body"], None, "--rerun goes with --resume RUN_ID"),
    ],
)
def test_rerun_refuses_unknown_steps_and_new_runs_before_writing(
    tmp_path: Path, rerun: list[str], resume: str | None, message: str
) -> None:
    run_flow(rerun_flow, store=tmp_path, run_id="rr")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(LokkiError, match=re.escape(message)) as info:
        run_flow(rerun_flow, store=tmp_path, resume=resume, rerun=rerun)
    assert info.value.exit_code == 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_a_users_folder_named_like_lokki_sam_keeps_its_frames_in_the_traceback(tmp_path: Path) -> None:
    """lokki-sam's own frames are dropped by their package folder, not by a substring of the path:
    a project under `lokki_sam_demo/` keeps its frames."""
    from lokki_sam.loader import load_flow

    folder = tmp_path / "lokki_sam_demo"
    folder.mkdir()
    (folder / "demo_flow.py").write_text(
        "from lokki_sam import flow, step\n"
        "@step\ndef boom() -> int:\n    raise ValueError('no')\n"
        "@flow\ndef demo():\n    return boom()\n"
    )
    with pytest.raises(StepFailed) as info:
        run_flow(load_flow(str(folder / "demo_flow.py")), store=tmp_path / "runs")
    assert "lokki_sam_demo/demo_flow.py" in info.value.message and "raise ValueError('no')" in info.value.message
