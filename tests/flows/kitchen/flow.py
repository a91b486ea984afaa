"""A flow that reaches code and values in every way the fingerprint describes (tests/test_fingerprint.py
computes it under each Python, imported as `flow` and as `kitchen.flow`: all must agree)."""

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

import helpers
from helpers import scale, twice

from lokki_sam import flow, step

try:  # a header around a constant, and a value read from the environment
    LIMIT = int(os.environ.get("KITCHEN_LIMIT", "3"))
except ValueError:
    LIMIT = 4

PATTERN = re.compile(r"\d+")
TABLE: dict[str, int] = {}
TABLE["k"] = 2


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Settings:
    factor: int = 2
    labels: tuple[str, ...] = ("a", "b")


class Scaler:
    def __init__(self, k: int) -> None:
        self.k = k
        self.when = datetime.date(2024, 1, 2)
        self.amount = decimal.Decimal("1.50")
        self.where = Path("data") / "in.csv"

    def apply(self, x: int) -> int:
        return x * self.k


class Slotted:
    __slots__ = ("k", "ratio")

    def __init__(self, k: int) -> None:
        self.k = k
        self.ratio = fractions.Fraction(1, 3)

    def shift(self, x: int) -> int:
        return x + self.k


@twice
def bump(v: int) -> int:
    return v + TABLE["k"]


@step
def numbers(limit: int = LIMIT) -> list[int]:
    """Numbers, with a blank line in a literal:

    the text of a string counts exactly."""
    return [i for i in range(limit)]


def make(k, settings=Settings()):
    lock = threading.Lock()  # cannot be described: the step is opaque, its marker the same everywhere

    @step(memory=512)
    def combine(x: int, *, shift=k, table=OrderedDict(a=1, b=2)) -> int:  # noqa: B006
        with lock:
            return x * k + shift + settings.factor + len(table)

    return combine


combine = make(3)
scaled = step(Scaler(4).apply)
slotted = step(Slotted(5).shift)


def offset(base: int, x: int) -> int:
    return base + scale(x)


by_ten = functools.partial(offset, 10)
by_ten.__name__ = "by_ten"  # type: ignore[attr-defined]
partial = step(by_ten)


@step
def finish(xs: list[int], fn, kind, colour=Colour.RED, tags=frozenset({"x", "y", "z"}), **constants) -> str:
    import lazy  # a project module imported inside the body
    from parts import deep  # a namespace package's module, inside the body

    total = sum(fn(x) for x in xs) + helpers.cached(2) + deep.deepen(1) + bump(1)
    return lazy.late(total) + kind.__name__ + colour.name + "".join(sorted(tags)) + PATTERN.pattern


@flow
def kitchen(limit: int = 3, label: str = "run"):
    return (
        numbers(limit=limit)
        .map(combine)
        .next(scaled)
        .next(slotted)
        .next(partial)
        .agg(finish, fn=scale, kind=Settings, big=2**80, blob=b"x" * 100, ratio=0.1, pair=(label, 1.5j))
    )
