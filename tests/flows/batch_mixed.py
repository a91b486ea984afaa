"""A flow mixing Lambda and AWS Batch steps: a Batch map source, a map whose body ends in a
Batch step (batched and not), and a Batch aggregation with a parameter. `BATCHED` and `LAMBDA_ONLY`
make the variants the tests compare (a module constant, read when the module is imported)."""

from __future__ import annotations

import os
from pathlib import Path

from lokki_sam import Retry, flow, step

# Every step on Lambda when set: the same flow, switched by configuration only.
COMPUTE = "lambda" if os.environ.get("LOKKI_TEST_LAMBDA_ONLY") else "batch"
SIZED = {"cpu": 0.5, "memory": 1024} if COMPUTE == "batch" else {}


@step(compute=COMPUTE, **SIZED)
def numbers(n: int = 5) -> list[int]:
    return list(range(n))


@step
def square(x: int) -> int:
    return x * x


@step(compute=COMPUTE)
def cube(x: int) -> int:
    return x * x * x


@step(compute=COMPUTE, retry=Retry(retries=2, interval=0, exceptions=(ConnectionError,)))
def shift(x: int, offset: int = 1) -> int:
    calls = os.environ.get("LOKKI_TEST_CALLS")  # a file: one line per call, to count them
    if calls:
        with open(calls, "a") as log:
            log.write(f"{x}\n")
    if str(x) == os.environ.get("LOKKI_TEST_FAIL_ON"):
        raise ValueError(f"{x} is not allowed")
    flaky = os.environ.get("LOKKI_TEST_FLAKY")  # a file: absent, the first call fails once (and creates it)
    if flaky and not Path(flaky).exists():
        Path(flaky).write_text("failed once")
        raise ConnectionError("the network blinked")
    return x + offset


@step(compute=COMPUTE)
def total(xs: list[int], label: str = "sum") -> str:
    if label == "boom":
        raise RuntimeError("no boom allowed")
    return f"{label}={sum(xs)}"


@flow
def batch_mixed(n: int = 5, offset: int = 1, label: str = "sum"):
    return numbers(n=n).map(square, batch_size=2).next(shift, offset=offset).agg(total, label=label)


@flow
def batch_single(n: int = 3, offset: int = 1, label: str = "sum"):
    return numbers(n=n).map(square).next(shift, offset=offset).agg(total, label=label)


@flow
def batch_only(n: int = 5, offset: int = 1, label: str = "sum"):
    """Every step a Batch job: what a local cloud without Lambda functions can run whole (one job per
    item: LocalStack's Step Functions has no ItemBatcher)."""
    return numbers(n=n).map(cube).next(shift, offset=offset).agg(total, label=label)
