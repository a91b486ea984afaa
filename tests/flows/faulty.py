"""Flows that fail on purpose, for the journey on both local clouds.

`faulty`: a map whose item `bad` raises, followed by an agg; `refused`: a step that always raises
ValueError under a Retry on ValueError (one retry), so an engine that reports the exception's
class retries it once and one that reports a generic error does not.
"""

from __future__ import annotations

from lokki_sam import Retry, flow, step


@step
def indexes(n: int = 4) -> list[int]:
    return list(range(n))


@step
def check(i: int, bad: int = -1) -> int:
    if i == bad:
        raise ValueError(f"item {i} is bad")
    return i * 10


@step
def add(values: list[int]) -> int:
    return sum(values)


@flow
def faulty(n: int = 4, bad: int = -1):
    return indexes(n=n).map(check).agg(add)


@step(retry=Retry(retries=1, interval=1, backoff=1.0, exceptions=(ValueError,)))
def refuse() -> str:
    raise ValueError("refused, as always")


@flow
def refused():
    return refuse()
