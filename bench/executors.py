"""Local maps under both executors (issue 26): CPU-bound, waiting (I/O) and trivial items.

    python bench/executors.py [--repeat 5] [--cases cpu8,cpu32,io,trivial] [--io-repeat N] [--before DIR]
                              [--start-method fork|forkserver|spawn]

Every figure is the median of --repeat whole processes (`lokki-sam run FLOW --executor X`:
interpreter start, imports, the run; a case's rows run interleaved, a round at a time), beside
the same function over the same items without lokki-sam (bench/floor.py): the floor, a plain
ProcessPoolExecutor with as many workers, and the sequential time, a plain loop. `--before DIR`
adds a row for the lokki-sam in DIR (a checkout of an earlier commit: `git archive REV | tar -x
-C DIR`), the default before. Every run uses compiled bytecode, as an installed package does
(PYTHONDONTWRITEBYTECODE, which this machine sets, is removed for them: the first run writes
__pycache__). The machine is shared: each case prints the 1-minute load average after each
round of its rows.
Targets (2 cores): the CPU-bound map with processes at most 0.6 of threads and within 15 % of
the floor; the 10,000-item trivial map no slower than the default before.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "bench_flows.py"
LOKKI_SAM = str(Path(sys.executable).with_name("lokki-sam"))
ITEM_SECONDS = 0.3  # the CPU-bound items' target length


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


@dataclass(frozen=True)
class Row:
    label: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    repeat: int | None = None  # fewer runs than the others (the 100 s sequential loop)


def measure(rows: list[Row], repeat: int) -> dict[str, float]:
    """Each row's median wall time. The rows run interleaved, a round at a time, so a change in
    the shared machine's speed moves every row alike; the load average is printed per round."""
    times: dict[str, list[float]] = {r.label: [] for r in rows}
    loads = [load()]
    for round_ in range(repeat):
        for r in rows:
            if r.repeat is None or round_ < r.repeat:
                times[r.label].append(whole_process(r.command, r.env))
        loads.append(load())
    medians = {label: statistics.median(t) for label, t in times.items()}
    for label, seconds in medians.items():
        print(f"  {label:<56} {seconds:8.2f} s")
    print(f"  (load average by round: {' -> '.join(loads)})")
    return medians


def whole_process(command: list[str], env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False, env=environ(env))
        seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def environ(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment with `extra`, without PYTHONDONTWRITEBYTECODE (see above)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | extra


def lokki(flow: str, params: dict[str, object], *options: str) -> list[str]:
    start = [LOKKI_SAM] if START_METHOD is None else [sys.executable, "-c", DRIVER, START_METHOD]
    command = [*start, "run", f"{FLOWS}:{flow}", "-q", "--store", "runs", *options]
    for name, value in params.items():
        command += ["-p", f"{name}={value}"]
    return command


def floor(mode: str, function: str, n: int, workers: int, **kwargs: object) -> list[str]:
    extra = [f"{name}={value}" for name, value in kwargs.items()]
    if START_METHOD is not None:
        extra += ["--start-method", START_METHOD]
    return [sys.executable, str(HERE / "floor.py"), mode, function, str(n), "--workers", str(workers), *extra]


def calibrate() -> tuple[int, float]:
    """Loops of bench/work.burn that take about ITEM_SECONDS here (now), and one item's time."""
    sys.path.insert(0, str(HERE))
    import work

    loops = 1_000_000
    for _ in range(3):  # scaled again at the estimate: the first, short probe runs slower per loop
        loops = int(loops * ITEM_SECONDS / min(_timed(functools.partial(work.burn, 0, loops)) for _ in range(3)))
    return loops, min(_timed(functools.partial(work.burn, 0, loops)) for _ in range(3))


def _timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


BEFORE: Path | None = None  # --before
START_METHOD: str | None = None  # --start-method: lokki-sam's workers start so (else Python's default)
# `lokki-sam` with a start method set first, as a user's own entry point would set it.
DRIVER = (
    "import multiprocessing, sys; multiprocessing.set_start_method(sys.argv.pop(1)); "
    "from lokki_sam.cli import main; sys.argv[0] = 'lokki-sam'; sys.exit(main())"
)
THREADS, PROCESSES, DEFAULT, BEFORE_ROW = (
    "lokki-sam --executor threads",
    "lokki-sam --executor processes",
    "lokki-sam (the default executor)",
    "lokki-sam before (its only executor: threads)",
)


def executor_rows(flow: str, params: dict[str, object]) -> list[Row]:
    """lokki-sam's rows: the earlier lokki-sam (--before), each executor, then the default."""
    rows = [] if BEFORE is None else [Row(BEFORE_ROW, lokki(flow, params), {"PYTHONPATH": str(BEFORE)})]
    rows += [Row(THREADS, lokki(flow, params, "--executor", "threads"))]
    rows += [Row(PROCESSES, lokki(flow, params, "--executor", "processes"))]
    return [*rows, Row(DEFAULT, lokki(flow, params))]


def cpu_case(n: int, repeat: int, loops: int) -> None:
    cpus = os.cpu_count() or 1
    print(f"\nCPU-bound map: {n} items of ~{ITEM_SECONDS} s pure Python (loops={loops})")
    rows = [
        Row("sequential (plain loop)", floor("loop", "burn", n, 1, loops=loops)),
        Row(f"floor: ProcessPoolExecutor, {cpus} workers", floor("pool", "burn", n, cpus, loops=loops)),
        *executor_rows("cpu_map", {"n": n, "loops": loops}),
    ]
    times = measure(rows, repeat)
    pool = times[rows[1].label]
    print(
        f"  processes / threads {times[PROCESSES] / times[THREADS]:.2f} (target <= 0.6); "
        f"processes / floor {times[PROCESSES] / pool:.2f} (target <= 1.15); default / floor {times[DEFAULT] / pool:.2f}"
    )


def io_case(n: int, repeat: int, seq_repeat: int) -> None:
    workers = min(32, (os.cpu_count() or 1) * 4)  # the thread executor's default
    params = {"n": n, "seconds": 0.1}
    print(f"\nwaiting map: {n} items of a 100 ms sleep")
    processes = lokki("io_map", params, "--executor", "processes")
    rows = [
        Row(f"sequential (plain loop; n={seq_repeat})", floor("loop", "nap", n, 1, seconds=0.1), repeat=seq_repeat),
        Row(f"floor: ProcessPoolExecutor, {workers} workers", floor("pool", "nap", n, workers, seconds=0.1)),
        *executor_rows("io_map", params),
        Row(f"lokki-sam --executor processes, concurrency {workers}", processes, {"LOKKI_CONCURRENCY": str(workers)}),
    ]
    measure(rows, repeat)


def trivial_case(n: int, repeat: int) -> None:
    cpus = os.cpu_count() or 1
    print(f"\ntrivial map: {n} items of x + 1")
    rows = [
        Row("sequential (plain loop)", floor("loop", "inc", n, 1)),
        Row(f"floor: ProcessPoolExecutor, {cpus} workers", floor("pool", "inc", n, cpus)),
        *executor_rows("trivial_map", {"n": n}),
    ]
    times = measure(rows, repeat)
    versus = f"default / before {times[DEFAULT] / times[BEFORE_ROW]:.2f} (target <= 1); " if BEFORE else ""
    print(f"  {versus}processes / threads {times[PROCESSES] / times[THREADS]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--io-repeat", type=int, default=1, help="runs of the 100 s sequential I/O loop")
    parser.add_argument("--cases", default="cpu8,cpu32,io,trivial")
    parser.add_argument("--before", type=Path, help="a checkout of an earlier lokki-sam, for a row of its own")
    parser.add_argument("--start-method", choices=("fork", "forkserver", "spawn"))
    args = parser.parse_args()
    global BEFORE, START_METHOD
    BEFORE = args.before.resolve() if args.before else None
    START_METHOD = args.start_method
    cases = args.cases.split(",")
    for command in (lokki("trivial_map", {"n": 1}), floor("loop", "inc", 1, 1)):  # compile the bytecode once
        whole_process(command, {})
    if BEFORE is not None:
        whole_process(lokki("trivial_map", {"n": 1}), {"PYTHONPATH": str(BEFORE)})
    loops, one = calibrate()
    print(
        f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}, start method "
        f"{START_METHOD or multiprocessing.get_start_method()}; median of {args.repeat} whole processes; "
        f"one CPU-bound item alone: {one:.2f} s; load average {load()}"
    )
    if "cpu8" in cases:
        cpu_case(8, args.repeat, loops)
    if "cpu32" in cases:
        cpu_case(32, args.repeat, loops)
    if "io" in cases:
        io_case(1000, args.repeat, args.io_repeat)
    if "trivial" in cases:
        trivial_case(10_000, args.repeat)


if __name__ == "__main__":
    main()
