"""Flows for the process executor's tests (tests/test_executors.py), defined at the top level of
an importable module so that spawn and forkserver workers find them as a Lambda would.

Steps record what happened in a file under $LOKKI_TEST_DIR (worker processes share no memory
with the test): `calls`, one line per call: step, item, pid.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from lokki_sam import Retry, flow, step


def here() -> Path:
    return Path(os.environ["LOKKI_TEST_DIR"])


def record(step_name: str, item: object) -> None:
    with open(here() / "calls", "a") as log:
        log.write(f"{step_name} {item} {os.getpid()}\n")


def calls_of(step_name: str) -> list[str]:
    log = here() / "calls"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[1] for line in lines if line.split()[0] == step_name]


@step
def numbers(n: int = 8) -> list[int]:
    return list(range(n))


@step
def where(x: int) -> tuple[int, int]:
    record("where", x)
    return x, os.getpid()


@step
def square(x: int) -> int:
    record("square", x)
    return x * x


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@flow
def pids(n: int = 8):
    """Which process ran each item."""
    return numbers(n=n).map(where, concurrency=2)


@step
def slow_where(x: int, seconds: float = 0.1) -> tuple[int, int]:
    time.sleep(seconds)
    return x, os.getpid()


@flow
def slow_pids(n: int = 6, seconds: float = 0.1):
    """Which process ran each item, each taking `seconds`: a map that outlives a short probe."""
    return numbers(n=n).map(slow_where, concurrency=2)


@flow
def squares(n: int = 8):
    return numbers(n=n).map(square, concurrency=2).agg(total)


class Refused(Exception):
    """An exception that does not survive pickling (its __init__ takes two arguments)."""

    def __init__(self, item: int, why: str) -> None:
        super().__init__(f"item {item}: {why}")
        self.item = item


@step
def picky(x: int, bad: int = 3) -> int:
    record("picky", x)
    if x == bad:
        raise Refused(x, "refused")
    return x


@flow
def refusing(n: int = 6, bad: int = 3):
    return numbers(n=n).map(picky, concurrency=2, tolerated_failure_count=1).agg(total)


@flow
def strict(n: int = 6, bad: int = 3):
    return numbers(n=n).map(picky, concurrency=2).agg(total)


@step(retry=Retry(retries=2, interval=3, backoff=1.0, exceptions=(ValueError,)))
def flaky(x: int) -> int:
    record("flaky", x)
    if calls_of("flaky").count(str(x)) < 3:  # the first two attempts fail
        raise ValueError(f"transient {x}")
    return x


@flow
def retried(n: int = 3):
    return numbers(n=n).map(flaky, concurrency=2).agg(total)


@step
def fragile(x: int, fatal: int = 10, how: str = "kill") -> int:
    record("fragile", x)
    if x == fatal:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(7)
    return x


@flow
def dying(n: int = 128, fatal: int = 10, how: str = "kill"):
    # One worker, 64 batches of 2: units of 4 batches (items 8-15 one of them). Item 10's process
    # dies: its batch (10, 11) fails; 8-9 (finished, maybe not written yet) and 12-15 go to a
    # new worker.
    return numbers(n=n).map(fragile, concurrency=1, batch_size=2, tolerated_failure_count=2).agg(total)


class Doomed:
    """A result whose pickling ends the process: a worker dies writing it, outside any batch."""

    def __reduce__(self) -> tuple[object, ...]:
        os._exit(3)


@step
def doom(x: int) -> object:
    record("doom", x)
    return Doomed()


@flow
def dooming(n: int = 2):
    return numbers(n=n).map(doom, concurrency=1)


@step
def quits(x: int) -> int:
    if x == 1:
        raise SystemExit(3)
    return x


@flow
def quitting(n: int = 3):
    return numbers(n=n).map(quits, concurrency=2)


@step
def lock(x: int) -> object:
    return threading.Lock()


@flow
def unpicklable(n: int = 3):
    return numbers(n=n).map(lock, concurrency=2)
