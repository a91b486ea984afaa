"""Trivial flows for bench/local_overhead.py: the work is nothing, so the time is lokki-sam's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lokki_sam import flow, step

sys.path.insert(0, str(Path(__file__).resolve().parent))
import work  # bench/work.py: the same functions the floor runs, without lokki-sam


@step
def seed(n: int = 0) -> int:
    return n


@step
def inc(x: int) -> int:
    return x + 1


@step
def items(n: int = 10_000) -> list[int]:
    return list(range(n))


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@flow
def linear_1(n: int = 0):
    return seed(n=n)


@flow
def linear_21(n: int = 0):
    chain = seed(n=n)
    for _ in range(20):
        chain = chain.next(inc)
    return chain


@flow
def trivial_map(n: int = 10_000):
    return items(n=n).map(inc).agg(total)


@flow
def trivial_map_batched(n: int = 10_000):
    return items(n=n).map(inc, batch_size=100).agg(total)


@step
def blobs(n: int = 10, mb: int = 10, kind: str = "hex") -> list[bytes | str]:
    """n items of `mb` MiB: random bytes, or random hex text (compressible to about half)."""
    size = mb << 20
    if kind == "hex":
        return [os.urandom(size // 2).hex() for _ in range(n)]
    return [os.urandom(size) for _ in range(n)]


@step
def measure(blob: bytes | str) -> int:
    return len(blob)


@flow
def big_items(n: int = 10, mb: int = 10, kind: str = "hex"):
    """The 10 x 10 MB flow of issue 15: 100 MB written as map items, read back by the map."""
    return blobs(n=n, mb=mb, kind=kind).map(measure).agg(total)


# bench/executors.py: maps whose items are CPU-bound or wait, the same functions as its floor.
burn = step(work.burn)
nap = step(work.nap)


@flow
def cpu_map(n: int = 8, loops: int = 3_000_000):
    return items(n=n).map(burn).agg(total)


@flow
def io_map(n: int = 1000, seconds: float = 0.1):
    return items(n=n).map(nap).agg(total)
