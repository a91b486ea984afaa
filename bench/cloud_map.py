"""What a big Distributed Map costs: Lambda invocations, S3 requests, state transitions, time.

Runs a map over N items (default 10,000) with batch_size 1 and 100 in moto's Step Functions
interpreter, every Lambda task running lokki-sam's real handler in-process against moto S3
(tests/support/moto_sfn.py). Prints a table. Emulated time is the interpreter's wall time on
this machine, not an AWS latency estimate.

    python bench/cloud_map.py [--items 10000] [--batch-sizes 1,100] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lokki_sam import execution, flow, step  # noqa: E402
from lokki_sam.execution import RunContext  # noqa: E402
from lokki_sam.params import resolve_params  # noqa: E402
from tests.support.moto_sfn import moto_cloud  # noqa: E402


@step
def numbers(n: int = 10_000) -> list[int]:
    return list(range(n))


@step
def square(x: int) -> int:
    return x * x


@step
def total(xs: list[int]) -> int:
    return sum(xs)


def make_flow(batch_size: int, concurrency: int) -> object:
    def bench_map(n: int = 10_000):  # type: ignore[no-untyped-def]
        return numbers(n=n).map(square, batch_size=batch_size, concurrency=concurrency).agg(total)

    bench_map.__name__ = f"bench_map_b{batch_size}"
    bench_map.__module__ = __name__
    built = flow(bench_map)
    globals()[bench_map.__name__] = built  # the handler finds flows among the module's globals
    return built


def measure(items: int, batch_size: int, concurrency: int) -> dict[str, object]:
    f = make_flow(batch_size, concurrency)
    graph = f.graph  # type: ignore[attr-defined]
    with moto_cloud() as cloud:
        cloud.deploy(graph)
        started = time.perf_counter()
        ex = cloud.execute(graph, {"n": items}, timeout=3600)
        seconds = time.perf_counter() - started
        assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
        ctx = RunContext(graph, cloud.store(graph), ex.run_id, resolve_params(graph.params, {"n": items}, where="b"))
        assert execution.read_result(ctx) == sum(x * x for x in range(items))
        history = cloud.history(ex.arn)
        parent = sum(1 for e in history if e["type"].endswith("StateEntered"))
        children = -(-items // batch_size)
        body_states = len(graph.maps[0].nodes)
        return {
            "batch_size": batch_size,
            "children": children,
            "lambda_invocations": cloud.counters.invocations,
            "s3_requests": cloud.counters.s3_requests,
            "transitions": parent + children * body_states,
            "parent_events": len(history),
            "seconds": seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="1,100")
    parser.add_argument("--concurrency", type=int, default=64, help="MaxConcurrency (moto starts one thread each)")
    args = parser.parse_args()
    rows = [measure(args.items, int(b), args.concurrency) for b in args.batch_sizes.split(",")]
    print(f"Distributed Map over {args.items:,} items, MaxConcurrency {args.concurrency}, moto interpreter")
    header = ("batch", "children", "Lambda invokes", "S3 requests*", "transitions**", "parent events", "seconds")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for r in rows:
        cells = [
            r["batch_size"],
            r["children"],
            r["lambda_invocations"],
            r["s3_requests"],
            r["transitions"],
            r["parent_events"],
            f"{r['seconds']:.1f}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print("* made by the Lambda handler (the ItemReader's one GetObject and ResultWriter writes come on top)")
    print("** parent states entered + one Task state per child execution (Standard children bill these)")


if __name__ == "__main__":
    main()
