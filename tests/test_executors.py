"""The process executor: maps in worker processes under every start method (fork, forkserver,
spawn), with the thread executor's results, failure records, retries and reports; workers that
die; flows a worker cannot reach (threads, with a note); and real signals: Ctrl-C, SIGTERM and
SIGKILL leave no process behind and the run resumes.

The runner's own tests (tests/test_local_runner.py, test_interrupt.py, ...) run under both
executors with Python's default start method; this module covers what differs per start method.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import flow, run_flow, step
from lokki_sam.errors import LokkiError, SerializationError, StepFailed
from lokki_sam.executors import auto
from lokki_sam.loader import load_flow
from lokki_sam.local import MapFailed
from lokki_sam.progress import Reporter
from lokki_sam.store import LocalStore
from tests.conftest import lokki_env
from tests.flows import shapes, workers
from tests.support.signals import HELD_MAP

START_METHODS = ["fork", "forkserver", "spawn"]
# Spawn and forkserver workers are fresh interpreters (they import lokki-sam, the flow's module and
# the parent's __main__): the `cli` cost marker, out of the quick loop.
FRESH = pytest.mark.cli


class Events(Reporter):
    """The reporter calls a run made: notes and retries."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.retries: list[tuple[str, int, str, str, int | None]] = []

    def executor_note(self, map_id: str, message: str, warning: bool = True) -> None:
        self.notes.append(message)

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None:
        self.retries.append((step, attempt, type(error).__name__, str(error), item))


@pytest.fixture(params=["fork", pytest.param("forkserver", marks=FRESH), pytest.param("spawn", marks=FRESH)])
def start_method(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Python's multiprocessing start method for the test (restored after it)."""
    monkeypatch.setenv("LOKKI_TEST_DIR", str(tmp_path))
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield str(request.param)
    multiprocessing.set_start_method(before, force=True)


@pytest.fixture
def fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LOKKI_TEST_DIR", str(tmp_path))
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("fork", force=True)
    yield "fork"
    multiprocessing.set_start_method(before, force=True)


# ------------------------------------------------------------------------ results and reports


def test_items_run_in_worker_processes_under_every_start_method(start_method: str, tmp_path: Path) -> None:
    events = Events()
    outcome = run_flow(workers.pids, {"n": 8}, store=tmp_path / "runs", executor="processes", reporter=events)
    assert [x for x, _ in outcome.result] == list(range(8))
    ran_in = {pid for _, pid in outcome.result}
    assert os.getpid() not in ran_in and 1 <= len(ran_in) <= 2  # concurrency=2: two workers
    assert events.notes == []


@FRESH
@pytest.mark.parametrize("name", ["map_agg", "odd_items", "enum_params", "dated", "layout_names"])
def test_shapes_give_their_results_in_spawned_and_forkserver_workers(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow_obj, params, expected = shapes.SHAPES[name]
    before = multiprocessing.get_start_method(allow_none=True)
    try:
        for method in ("spawn", "forkserver"):
            multiprocessing.set_start_method(method, force=True)
            events = Events()
            outcome = run_flow(flow_obj, params, store=tmp_path / method, executor="processes", reporter=events)
            assert outcome.result == expected, method
            assert events.notes == []
    finally:
        multiprocessing.set_start_method(before, force=True)


def failure_records(store: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(store.glob("*/step=*/failures/*.json"))]


def test_a_failing_item_is_reported_and_recorded_as_with_threads(start_method: str, tmp_path: Path) -> None:
    """The same failure record (class, message, the user's traceback), the same outcome, though
    the exception (its __init__ takes two arguments) cannot be pickled back as itself."""
    runs = {}
    for executor in ("threads", "processes"):
        store = tmp_path / executor
        runs[executor] = run_flow(workers.refusing, store=store, run_id="r", executor=executor)
        records = failure_records(store)
        assert len(records) == 1
        assert records[0]["error"] == "Refused" and records[0]["message"] == "item 3: refused"
        assert records[0]["step"] == "picky" and 'raise Refused(x, "refused")' in records[0]["traceback"]
    assert failure_records(tmp_path / "threads") == failure_records(tmp_path / "processes")
    assert runs["threads"].result == runs["processes"].result == sum(range(6)) - 3
    assert runs["threads"].failures == runs["processes"].failures


def test_retries_in_workers_are_reported_by_the_runner(start_method: str, tmp_path: Path) -> None:
    events = Events()
    waits: list[float] = []
    outcome = run_flow(
        workers.retried, store=tmp_path / "runs", executor="processes", reporter=events, sleep=waits.append
    )
    assert outcome.result == 0 + 1 + 2
    assert waits == [3.0] * 6  # the runner's sleep spends the waits; the workers do not wait
    assert sorted(events.retries) == sorted(
        ("flaky", attempt, "ValueError", f"transient {x}", x) for x in range(3) for attempt in (1, 2)
    )
    assert sorted(workers.calls_of("flaky")) == sorted(str(x) for x in range(3) for _ in range(3))


@pytest.mark.parametrize(
    ("how", "said"), [("kill", "was killed by SIGKILL (out of memory?)"), ("exit", "exited with code 7")]
)
def test_a_worker_that_dies_fails_only_the_batch_it_was_running(fork: str, tmp_path: Path, how: str, said: str) -> None:
    outcome = run_flow(workers.dying, {"how": how}, store=tmp_path / "runs", executor="processes")
    (failure,) = outcome.failures
    assert failure.indexes == (10, 11) and failure.error_type == "WorkerDied"
    assert failure.message == f"the process running it {said}"
    assert outcome.result == sum(range(128)) - 10 - 11
    counts = Counter(map(int, workers.calls_of("fragile")))
    assert counts[10] == 1 and counts[11] == 0  # the batch stopped where its process died
    # Every other item ran; twice only 8 and 9, finished in the dead process but maybe not written.
    assert set(counts) == set(range(128)) - {11}
    assert {x for x, n in counts.items() if n > 1} <= {8, 9}


@FRESH
def test_a_spawned_worker_that_dies_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKKI_TEST_DIR", str(tmp_path))
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        outcome = run_flow(workers.dying, store=tmp_path / "runs", executor="processes")
    finally:
        multiprocessing.set_start_method(before, force=True)
    assert [f.indexes for f in outcome.failures] == [(10, 11)]
    assert outcome.result == sum(range(128)) - 10 - 11


def test_workers_that_keep_dying_outside_any_batch_end_the_run(fork: str, tmp_path: Path) -> None:
    """A worker that dies while it writes (no batch to blame) has its batches given again, to a
    new worker, but not forever."""
    with pytest.raises(LokkiError, match=r"keep dying outside any batch \(last: exited with code 3\)"):
        run_flow(workers.dooming, store=tmp_path / "runs", executor="processes")
    assert sorted(workers.calls_of("doom")) == ["0", "0", "1", "1"]  # 4 workers, one batch each, in turn


def test_lokki_sam_errors_in_a_worker_end_the_run_as_with_threads(start_method: str, tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"step 'quits' called sys.exit\(3\)"):
        run_flow(workers.quitting, store=tmp_path / "a", executor="processes")
    with pytest.raises(SerializationError, match=r"result of step 'lock' for map item \d of type lock"):
        run_flow(workers.unpicklable, store=tmp_path / "b", executor="processes")


def test_a_map_fails_beyond_its_tolerance_naming_the_items(fork: str, tmp_path: Path) -> None:
    with pytest.raises(MapFailed, match=r"item 1: Refused: item 1: refused \(step 'picky'\)"):
        run_flow(workers.strict, {"bad": 1}, store=tmp_path / "a", executor="processes", run_id="r")
    (record,) = failure_records(tmp_path / "a")
    assert record["items"] == [1]


# ------------------------------------------------------------------------- the auto executor


@pytest.mark.parametrize(
    ("busy", "elapsed", "finished", "left", "workers", "switch"),
    [
        (0.97, 0.2, 0, 7, 2, True),  # 8 items of 0.3 s of Python: the probe finished none yet
        (0.97, 0.2, 4500, 5000, 2, False),  # 10,000 trivial items: 0.2 s of work left, not worth it
        (0.03, 0.2, 2, 998, 2, False),  # 1,000 waits of 100 ms: the CPU idles, threads suit it
        (0.97, 0.2, 0, 7, 1, False),  # one core (or concurrency=1): nothing to gain
        (0.60, 0.2, 1, 40, 4, True),  # a loaded machine still gives the probe most of a core
    ],
)
def test_the_auto_executor_moves_to_processes_when_they_would_finish_sooner(
    busy: float, elapsed: float, finished: int, left: int, workers: int, switch: bool
) -> None:
    assert auto.needs_processes(busy, elapsed, finished, left, workers) is switch


@pytest.fixture
def always_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The auto executor's probe ends early and finds every map worth processes (what a
    CPU-bound map with work left gives; the figures are the decision's test, above)."""
    monkeypatch.setattr(auto, "PROBE_SECONDS", 0.05)
    monkeypatch.setattr(auto, "CPU_BOUND", 0.0)
    monkeypatch.setattr(auto, "WORTH_SECONDS", 0.0)


def test_auto_runs_the_rest_of_a_map_in_processes_after_its_probe(
    start_method: str, tmp_path: Path, always_processes: None
) -> None:
    events = Events()
    outcome = run_flow(workers.slow_pids, store=tmp_path / "runs", reporter=events)  # auto: the default
    assert [x for x, _ in outcome.result] == list(range(6))
    ran_in = [pid for _, pid in outcome.result]
    assert ran_in[0] == os.getpid()  # the probe's item, on the runner's thread
    assert os.getpid() not in ran_in[1:] and len(set(ran_in[1:])) <= 2
    (note,) = events.notes
    assert note.startswith("map 'map-slow_where' kept a core ") and note.endswith(
        ": its 5 other batch(es) run in 2 worker processes"
    )
    assert multiprocessing.active_children() == []


def test_auto_keeps_a_map_in_threads_when_its_probe_waits(
    start_method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auto, "PROBE_SECONDS", 0.05)
    events = Events()
    outcome = run_flow(workers.slow_pids, store=tmp_path / "runs", reporter=events)
    assert {pid for _, pid in outcome.result} == {os.getpid()}  # sleeping items: threads
    assert events.notes == [] and multiprocessing.active_children() == []


def test_auto_says_why_a_map_that_needs_processes_stays_in_threads(
    tmp_path: Path, always_processes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOKKI_TEST_DIR", str(tmp_path))
    events = Events()
    outcome = run_flow(workers.slow_pids, store=LockedStore(tmp_path), reporter=events)
    assert {pid for _, pid in outcome.result} == {os.getpid()}
    (note,) = events.notes
    assert "kept a core" in note and "but stays in threads: its store" in note


# ------------------------------------------------------------------ what cannot reach a worker


def test_a_flow_made_in_a_function_runs_in_threads_under_spawn_with_a_note(start_method: str, tmp_path: Path) -> None:
    @step
    def tag(x: int) -> tuple[int, int]:
        return x, os.getpid()

    @flow
    def local(n: int = 4):
        return workers.numbers(n=n).map(tag)

    events = Events()
    outcome = run_flow(local, store=tmp_path / "runs", executor="processes", reporter=events)
    assert [x for x, _ in outcome.result] == [0, 1, 2, 3]
    in_parent = {pid for _, pid in outcome.result} == {os.getpid()}
    if start_method == "fork":  # the worker inherits the flow
        assert not in_parent and events.notes == []
    else:
        assert in_parent
        (note,) = events.notes
        assert note.startswith("map 'map-tag' runs in threads, not processes: flow 'local' is not defined at the top")
        assert note.endswith(f"the {start_method} start method needs it (fork does not)")


class LockedStore(LocalStore):
    """A store holding what cannot be pickled (as a client with open connections does)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.guard = threading.Lock()


def test_a_store_a_worker_cannot_open_keeps_the_map_in_threads_with_a_note(fork: str, tmp_path: Path) -> None:
    events = Events()
    outcome = run_flow(workers.squares, store=LockedStore(tmp_path), executor="processes", reporter=events)
    assert outcome.result == sum(x * x for x in range(8))
    (note,) = events.notes
    assert "cannot be opened by another process; use a local directory" in note


@FRESH
def test_a_module_edited_since_the_run_started_is_refused_by_a_spawned_worker(
    tmp_path: Path, write_module: Callable[[str, str], Path], unload_modules: None
) -> None:
    source = """
        from lokki_sam import flow, step

        @step
        def items(n: int = 3) -> list[int]:
            return list(range(n))

        @step
        def inc(x: int) -> int:
            return x + 1

        @flow
        def edited(n: int = 3):
            return items(n=n).map(inc)
    """
    path = write_module("edited_flow", source)
    graph = load_flow(str(path)).graph
    assert graph.fingerprints.flow  # as a run takes it when it starts
    write_module("edited_flow", source.replace("x + 1", "x + 1000"))
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        with pytest.raises(LokkiError, match="the flow's module changed since the run started") as info:
            run_flow(graph, store=tmp_path / "runs", executor="processes")
    finally:
        multiprocessing.set_start_method(before, force=True)
    assert info.value.exit_code == 2


# ------------------------------------------------------------------------------------ signals

# `lokki-sam` with a start method chosen first, as a user's own entry point would choose it.
DRIVER = (
    "import multiprocessing, sys; multiprocessing.set_start_method(sys.argv.pop(1)); "
    "from lokki_sam.cli import main; sys.argv[0] = 'lokki-sam'; sys.exit(main())"
)


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 120  # a safety net only: the wait ends on the event
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def calls(folder: Path) -> list[tuple[int, int]]:
    log = folder / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(int(x), int(pid)) for x, pid in (line.split() for line in lines)]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc): workers, fork server, resource tracker."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def start_run(tmp_path: Path, method: str, *extra: str) -> subprocess.Popen[str]:
    (tmp_path / "slow.py").write_text(HELD_MAP)
    (tmp_path / "hold").touch()
    command = [sys.executable, "-c", DRIVER, method, "run", "slow.py", "--store", "runs", "-q", "--executor"]
    return subprocess.Popen(
        [*command, "processes", *extra],
        cwd=tmp_path,
        env=lokki_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def resume(tmp_path: Path, method: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "hold").unlink(missing_ok=True)
    run_id = next((tmp_path / "runs").iterdir()).name
    command = [sys.executable, "-c", DRIVER, method, "run", "slow.py", "--store", "runs", "-q", "--resume", run_id]
    return subprocess.run(
        [*command, "--executor", "processes"],
        cwd=tmp_path,
        env=lokki_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def in_flight(tmp_path: Path, proc: subprocess.Popen[str]) -> set[int]:
    """Wait until both workers run an item, held; their pids."""
    wait_for(lambda: len({pid for _, pid in calls(tmp_path)}) >= 2, "both workers got an item", proc)
    return {pid for _, pid in calls(tmp_path)}


@pytest.mark.cli
@pytest.mark.parametrize(
    ("method", "signum", "code", "said"),
    [
        ("fork", signal.SIGINT, 130, "interrupted; finished work is saved"),
        ("forkserver", signal.SIGINT, 130, "interrupted; finished work is saved"),
        ("spawn", signal.SIGINT, 130, "interrupted; finished work is saved"),
        ("fork", signal.SIGTERM, 143, "terminated (SIGTERM); finished work is saved"),
        ("spawn", signal.SIGTERM, 143, "terminated (SIGTERM); finished work is saved"),
    ],
)
def test_a_signal_stops_the_workers_leaves_no_process_and_the_run_resumes(
    tmp_path: Path, method: str, signum: int, code: int, said: str
) -> None:
    proc = start_run(tmp_path, method)
    pids = in_flight(tmp_path, proc)
    below = descendants(proc.pid)
    assert pids <= below
    proc.send_signal(signum)  # to the runner only: it stops its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert said in err and "--resume slowflow-" in err and "Traceback" not in err
    wait_for(lambda: not any(running(pid) for pid in below), "the runner's processes to end")
    first = calls(tmp_path)
    assert len(first) < 40
    resumed = resume(tmp_path, method)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(sum(range(40)))
    items = [x for x, _ in calls(tmp_path)]
    assert sorted(set(items)) == list(range(40))
    assert len(items) - 40 <= 2  # only the items in flight (one per worker) ran twice


@pytest.mark.cli
@pytest.mark.parametrize("method", START_METHODS)
def test_workers_die_with_a_killed_runner_and_the_run_resumes(tmp_path: Path, method: str) -> None:
    proc = start_run(tmp_path, method)
    pids = in_flight(tmp_path, proc)
    below = descendants(proc.pid)
    assert pids <= below
    proc.kill()  # SIGKILL: the runner cannot stop anything itself
    proc.communicate(timeout=120)
    wait_for(lambda: not any(running(pid) for pid in below), "every process below the killed runner to end")
    resumed = resume(tmp_path, method)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(sum(range(40)))
    assert sorted({x for x, _ in calls(tmp_path)}) == list(range(40))


@pytest.mark.cli
def test_ctrl_c_at_the_terminal_reaches_runner_and_workers_without_a_traceback(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole process group: the workers get it too."""
    proc = start_run(tmp_path, "fork")
    in_flight(tmp_path, proc)
    group = [proc.pid, *descendants(proc.pid)]
    for pid in group:  # as the terminal does, without making the test's own group the target
        os.kill(pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; finished work is saved" in err


PRINTING = """
import os
from lokki_sam import flow, main, step

@step
def items(n: int = 4) -> list[int]:
    return list(range(n))

@step
def noisy(x: int) -> int:
    print(f"noise from item {x}")  # stdout belongs to the result: this must reach stderr
    os.system(f"echo shell noise {x}")  # a program the step runs writes to file descriptor 1 too
    return x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def printing(n: int = 4):
    return items(n=n).map(noisy).agg(total)

if __name__ == "__main__":
    import multiprocessing, sys
    multiprocessing.set_start_method(os.environ["START_METHOD"])
    main(printing)
"""


@pytest.mark.cli
@pytest.mark.parametrize("method", START_METHODS)
def test_what_steps_print_in_workers_goes_to_stderr(tmp_path: Path, method: str) -> None:
    (tmp_path / "printing.py").write_text(PRINTING)
    command = [sys.executable, "-c", DRIVER, method, "run", "printing.py", "--store", "runs", "-q"]
    done = subprocess.run(
        [*command, "--executor", "processes"], cwd=tmp_path, env=lokki_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "6\n"
    assert all(f"noise from item {x}" in done.stderr and f"shell noise {x}" in done.stderr for x in range(4))


@pytest.mark.cli
@pytest.mark.parametrize(("method", "in_processes"), [("fork", True), ("spawn", False)])
def test_main_flow_takes_the_executor_and_a_script_under_spawn_runs_in_threads(
    tmp_path: Path, method: str, in_processes: bool
) -> None:
    """`python flow.py run --executor processes`: under fork the workers inherit the script's
    flow; under spawn a new interpreter cannot import the script (`__main__`): threads, and why."""
    (tmp_path / "printing.py").write_text(PRINTING)
    env = lokki_env(tmp_path, START_METHOD=method)
    command = [sys.executable, "printing.py", "run", "--store", "runs", "--executor", "processes"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "6\n"
    note = "note: map 'map-noisy' runs in threads, not processes: the flow is defined in the script being run"
    assert (note in done.stderr) is not in_processes, done.stderr
