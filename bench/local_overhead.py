"""Overhead of the local runner: per step of a linear flow, per item of a trivial map, and the
10 x 10 MB flow of issue 15 (bytes and random hex) before and after its store changes.

    python bench/local_overhead.py [--repeat 5] [--items 10000] [--big-only]
    python bench/local_overhead.py --against DIR [--repeat 9]

`--against DIR` compares this lokki-sam with the one in DIR (a checkout of an earlier commit:
`git archive REV | tar -x -C DIR`, imported through PYTHONPATH) on the same flows: runs of the
two interleaved, whole process, median wall and CPU time (user + system) of each, compiled
bytecode on both sides.

Every figure is the median of `--repeat` runs of a whole `lokki-sam run` process (import,
graph build, store writes, result), so it is what a user waits for. Steps and items do nothing
(bench/bench_flows.py), so the time is lokki-sam's own. Target (issue 2): a 10,000-item trivial
map in under 3 s end to end. Issue 15: the 10 x 10 MB random-hex flow in 0.7 s or less; "before"
runs the same flow through bench/baseline_run.py (the pre-issue-15 store path).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "bench_flows.py"
LOKKI_SAM = str(Path(sys.executable).with_name("lokki-sam"))


BASELINE = [sys.executable, str(HERE / "baseline_run.py")]


def timed_run(flow: str, params: dict[str, int | str], store: Path, command: list[str] | None = None) -> float:
    args = [*(command or [LOKKI_SAM]), "run", f"{FLOWS}:{flow}", "-q", "--store", str(store)]
    for name, value in params.items():
        args += ["-p", f"{name}={value}"]
    began = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")
    return seconds


def median_run(flow: str, params: dict[str, int | str], repeat: int, command: list[str] | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return statistics.median(timed_run(flow, params, Path(tmp) / "runs", command) for _ in range(repeat))


def in_process(flow_name: str, params: dict[str, int | str], repeat: int) -> float:
    """The run alone, without interpreter start and imports."""
    sys.path.insert(0, str(HERE))
    import bench_flows

    from lokki_sam import run_flow

    flow = getattr(bench_flows, flow_name)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            began = time.perf_counter()
            run_flow(flow, params, store=tmp)
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--big-only", action="store_true", help="only the 10 x 10 MB flow")
    parser.add_argument("--against", type=Path, help="an earlier lokki-sam's checkout, to compare with")
    args = parser.parse_args()
    n, repeat = args.items, args.repeat
    if args.against is not None:
        compare(args.against.resolve(), n, repeat)
        return
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; median of {repeat} runs; "
        f"load average {load:.1f}\n"
    )
    bench_big(repeat)
    if args.big_only:
        return

    one = median_run("linear_1", {}, repeat)
    many = median_run("linear_21", {}, repeat)
    print(f"linear flow, 1 step (whole process):        {one * 1000:8.1f} ms")
    print(f"linear flow, 21 steps (whole process):      {many * 1000:8.1f} ms")
    print(f"  per-step overhead:                        {(many - one) / 20 * 1000:8.2f} ms")
    ip1, ip21 = in_process("linear_1", {}, repeat), in_process("linear_21", {}, repeat)
    print(f"  per-step overhead (in-process run_flow):  {(ip21 - ip1) / 20 * 1000:8.2f} ms\n")

    empty = median_run("trivial_map", {"n": 0}, repeat)
    full = median_run("trivial_map", {"n": n}, repeat)
    batched = median_run("trivial_map_batched", {"n": n}, repeat)
    print(f"map over 0 items (whole process):           {empty * 1000:8.1f} ms")
    print(f"map over {n} items (whole process):     {full * 1000:8.1f} ms   target < 3000 ms")
    print(f"  per-item overhead:                        {(full - empty) / n * 1e6:8.1f} us")
    print(f"map over {n} items, batch_size=100:     {batched * 1000:8.1f} ms")
    print(f"  per-item overhead:                        {(batched - empty) / n * 1e6:8.1f} us")
    ip_full = in_process("trivial_map", {"n": n}, repeat)
    print(f"map over {n} items (in-process run_flow): {ip_full * 1000:8.1f} ms")
    verdict = "meets" if full < 3.0 else "MISSES"
    print(f"\n{verdict} the target: {n}-item trivial map end to end in {full:.2f} s")


def bench_big(repeat: int) -> None:
    """The 10 x 10 MB flow, whole process, before and after; and the data generation alone."""
    sys.path.insert(0, str(HERE))
    import bench_flows

    for kind in ("bytes", "hex"):
        params: dict[str, int | str] = {"kind": kind}
        gen = statistics.median(best_of_one(lambda kind=kind: bench_flows.blobs(kind=kind)) for _ in range(repeat))
        before = median_run("big_items", params, repeat, BASELINE)
        after = median_run("big_items", params, repeat)
        print(
            f"10 x 10 MB {kind:<5} flow (whole process): before {before * 1000:7.0f} ms, after {after * 1000:7.0f} ms"
            f"   (generating the data alone: {gen * 1000:.0f} ms)"
        )
    print("target: the random-hex flow <= 700 ms\n")


def best_of_one(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def compare(before: Path, n: int, repeat: int) -> None:
    """This lokki-sam against the one in `before`, interleaved, whole process: wall and CPU."""
    cases: list[tuple[str, dict[str, int | str]]] = [
        ("trivial_map", {"n": n}),
        ("trivial_map_batched", {"n": n}),
        ("linear_21", {}),
        ("big_items", {"kind": "hex"}),
        ("big_items", {"kind": "bytes"}),
    ]
    sides = {"before": {"PYTHONPATH": str(before)}, "after": {}}
    print(f"{before.name} (before) against this checkout (after); median of {repeat}, interleaved")
    print(f"load average {os.getloadavg()[0]:.1f}")
    for flow, params in cases:
        runs: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for attempt in range(repeat + 1):  # the first round writes the bytecode: not counted
            for side, env in sides.items():
                with tempfile.TemporaryDirectory() as tmp:
                    measured = wall_and_cpu(flow, params, Path(tmp) / "runs", env)
                if attempt:
                    runs[side].append(measured)
        wall = {side: statistics.median(w for w, _ in times) for side, times in runs.items()}
        cpu = {side: statistics.median(c for _, c in times) for side, times in runs.items()}
        label = f"{flow} {' '.join(f'{k}={v}' for k, v in params.items())}"
        print(
            f"  {label:<32} wall {wall['before'] * 1e3:7.0f} -> {wall['after'] * 1e3:7.0f} ms "
            f"({wall['after'] / wall['before']:.2f}x)   cpu {cpu['before'] * 1e3:7.0f} -> {cpu['after'] * 1e3:7.0f} ms "
            f"({cpu['after'] / cpu['before']:.2f}x)   load {os.getloadavg()[0]:.1f}"
        )


def wall_and_cpu(flow: str, params: dict[str, int | str], store: Path, env: dict[str, str]) -> tuple[float, float]:
    args = [LOKKI_SAM, "run", f"{FLOWS}:{flow}", "-q", "--store", str(store)]
    for name, value in params.items():
        args += ["-p", f"{name}={value}"]
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | env
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=environ)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")
    return wall, (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)


if __name__ == "__main__":
    main()
