"""Overhead of the local runner: per step of a linear flow, per item of a trivial map, and the
10 x 10 MB flow of issue 15 (bytes and random hex) before and after its store changes.

    python bench/local_overhead.py [--repeat 5] [--items 10000] [--big-only]

Every figure is the median of `--repeat` runs of a whole `lokki-sam run` process (import,
graph build, store writes, result), so it is what a user waits for. Steps and items do nothing
(bench/bench_flows.py), so the time is lokki-sam's own. Target (issue 2): a 10,000-item trivial
map in under 3 s end to end. Issue 15: the 10 x 10 MB random-hex flow in 0.7 s or less; "before"
runs the same flow through bench/baseline_run.py (the pre-issue-15 store path).
"""

from __future__ import annotations

import argparse
import os
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
    args = parser.parse_args()
    n, repeat = args.items, args.repeat
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


if __name__ == "__main__":
    main()
