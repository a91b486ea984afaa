"""The work of bench/executors.py's maps, as plain functions: the flows wrap them as steps
(bench_flows.py) and the floor and sequential runs call them directly, importing no lokki-sam."""

from __future__ import annotations

import time


def burn(x: int, loops: int = 3_000_000) -> int:
    """Pure Python arithmetic: holds the GIL for as long as it runs."""
    total = 0
    for i in range(loops):
        total += (i ^ x) % 7
    return total


def nap(x: int, seconds: float = 0.1) -> int:
    """Waits without using the CPU, as a call to a service does."""
    time.sleep(seconds)
    return x


def inc(x: int) -> int:
    return x + 1
