"""Two numeric pipelines in one module (pure standard library, seeded, so results are reproducible).

    lokki-sam run examples/numeric.py:pi -p samples=400000 -p chunks=8
    lokki-sam run examples/numeric.py:zscores -p series=4

`pi`: a Monte Carlo estimate of pi. The samples are split into seeded chunks, each chunk is a map
item, the agg adds up the hits, and sequential steps after the agg turn them into an estimate and
a report. `zscores`: an open map (no agg) that standardises several seeded random series and
returns one summary per series; fetching a series is retried, as a call to a flaky service would be.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

from lokki_sam import Retry, flow, step

# ---------------------------------------------------------------------------------- pi


@step
def plan_chunks(samples: int = 200_000, chunks: int = 8, seed: int = 42) -> list[tuple[int, int]]:
    """(seed, sample count) per chunk; the counts add up to `samples` exactly."""
    if samples < 1 or chunks < 1:
        raise ValueError("samples and chunks must be >= 1")
    base, extra = divmod(samples, chunks)
    return [(seed * 1_000_003 + i, base + (1 if i < extra else 0)) for i in range(chunks) if base or i < extra]


@step
def throw_darts(chunk: tuple[int, int]) -> tuple[int, int]:
    """(hits inside the unit quarter circle, darts thrown) for one chunk."""
    chunk_seed, n = chunk
    rng = random.Random(chunk_seed)
    hits = 0
    for _ in range(n):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits, n


@step
def combine(parts: list[tuple[int, int]]) -> tuple[int, int]:
    return sum(h for h, _ in parts), sum(n for _, n in parts)


@step
def estimate(totals: tuple[int, int]) -> dict[str, float]:
    hits, n = totals
    value = 4 * hits / n
    # Standard error of the estimate: 4 * sqrt(p (1 - p) / n) with p = hits / n.
    p = hits / n
    return {"estimate": value, "error": abs(value - math.pi), "stderr": 4 * math.sqrt(p * (1 - p) / n), "n": n}


@step
def report(stats: dict[str, float], digits: int = 4) -> dict[str, Any]:
    return {
        "pi": round(stats["estimate"], digits),
        "abs_error": round(stats["error"], digits + 2),
        "within_3_stderr": stats["error"] <= 3 * stats["stderr"],
        "samples": int(stats["n"]),
    }


@flow
def pi(samples: int = 200_000, chunks: int = 8, seed: int = 42, digits: int = 4):
    """Monte Carlo pi: map over seeded chunks, agg the hits, then estimate and report."""
    chunks_ = plan_chunks(samples=samples, chunks=chunks, seed=seed)
    return chunks_.map(throw_darts).agg(combine).next(estimate).next(report)


# ------------------------------------------------------------------------------ zscores


@step
def series_names(series: int = 3) -> list[str]:
    return [f"sensor-{i:02d}" for i in range(series)]


@step(retry=Retry(retries=3, interval=0.5, backoff=2.0, max_delay=4, exceptions=(ConnectionError, TimeoutError)))
def fetch_series(name: str, length: int = 1000, seed: int = 7) -> dict[str, Any]:
    """Readings of one sensor. A real pipeline would call a service here, hence the retry."""
    rng = random.Random(f"{seed}:{name}")
    level, spread = rng.uniform(10, 100), rng.uniform(1, 5)
    return {"name": name, "values": [rng.gauss(level, spread) for _ in range(length)]}


@step
def standardise(series: dict[str, Any]) -> dict[str, Any]:
    values = series["values"]
    mean, stdev = statistics.fmean(values), statistics.pstdev(values)
    z = [(v - mean) / stdev for v in values]
    return {
        "name": series["name"],
        "mean": round(mean, 6),
        "stdev": round(stdev, 6),
        "outliers": sum(1 for v in z if abs(v) > 3),
        "max_abs_z": round(max(abs(v) for v in z), 6),
    }


@flow
def zscores(series: int = 3, length: int = 1000, seed: int = 7):
    """An open map: one standardised summary per sensor series, in series order."""
    return series_names(series=series).map(fetch_series).next(standardise)
