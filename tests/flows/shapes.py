"""One flow per graph shape the product supports; shared by the local, cloud and SAM tests.

SHAPES maps a flow name to (flow, params, expected result) where the expected result is
computed here by plain Python, independently of lokki-sam.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from lokki_sam import Retry, flow, step

# ------------------------------------------------------------------------------- steps


@step
def numbers(n: int = 5) -> list[int]:
    return list(range(1, n + 1))


@step
def start(value: int = 1) -> int:
    return value


@step
def inc(x: int) -> int:
    return x + 1


@step
def double(x: int) -> int:
    return x * 2


@step
def square(x: int) -> int:
    return x * x


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@step
def to_range(n: int) -> list[int]:
    return list(range(n))


@step
def scale(x: int, factor: int = 1) -> int:
    return x * factor


@step
def label(xs: list[int], prefix: str = "n", upper: bool = False) -> str:
    text = ",".join(f"{prefix}{x}" for x in xs)
    return text.upper() if upper else text


@step
def odd_things() -> list[Any]:
    return [b"\x00\xffbytes", (1, "tuple"), dt.datetime(2024, 1, 2, 3, 4, 5), Decimal("1.10"), {3, 1, 2}, None]


@step
def identity(x: Any) -> Any:
    return x


@step
def describe(items: list[Any]) -> list[str]:
    return [type(i).__name__ for i in items]


@step
def settings(xs: list[int], weights: dict[str, float] | None = None, names: list[str] | None = None) -> dict[str, Any]:
    return {"sum": sum(xs) * (weights or {}).get("sum", 1.0), "names": sorted(names or [])}


# Steps named like every fixed name of the key layout (and like its directories): the layout must
# keep them apart by construction.
@step
def items(n: int = 3) -> list[int]:
    return list(range(n))


@step
def manifest(x: int) -> int:
    return x + 1


@step
def failures(x: int) -> int:
    return x * 10


@step
def todo(xs: list[int]) -> list[int]:
    return [*xs, len(xs)]


@step
def output(x: int) -> int:
    return x - 1


@step
def lock(xs: list[int]) -> int:
    return sum(xs)


@step
def run(x: int) -> int:
    return x * 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@step
def repeat_level(level: Level) -> list[int]:
    assert isinstance(level, Level)  # the member, not its value or name, in both engines
    return [int(level)] * 3


@step
def days_until(day: dt.date, at: dt.datetime | None = None) -> list[str]:
    start = (at or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).date()
    return [(start + dt.timedelta(days=k)).isoformat() for k in range((day - start).days + 1)]


@step
def weekday(iso: str) -> str:
    return dt.date.fromisoformat(iso).strftime("%a")


@step
def week(names: list[str]) -> str:
    return " ".join(names)


@step
def half_hours(start: dt.time, until: dt.time | None = None) -> list[str]:
    assert isinstance(start, dt.time)  # a time, not its text, in both engines
    end = until or dt.time(12, 0)
    minutes = range(start.hour * 60 + start.minute, end.hour * 60 + end.minute + 1, 30)
    return [dt.time(m // 60, m % 60).isoformat("minutes") for m in minutes]


@step
def o_clock(hhmm: str) -> str:
    return hhmm.replace(":", "h")


@step
def make_route(route: tuple[str, str], via: list[str], labels: dict[str, str]) -> str:
    return f"{route[0]}->{'->'.join(via)}->{route[1]} {sorted(labels.items())}"


# ------------------------------------------------------------------------------- flows


@flow
def linear(value: int = 1):
    return start(value=value).next(inc).next(double).next(inc)


@flow
def map_agg(n: int = 5):
    return numbers(n=n).map(square).agg(total)


@flow
def inner_chain(n: int = 6):
    return numbers(n=n).map(inc).next(double).agg(total)


@flow
def open_map(n: int = 4):
    return numbers(n=n).map(square)


@flow
def open_map_chain(n: int = 4):
    return numbers(n=n).map(inc).next(square)


@flow
def after_agg(n: int = 4):
    return numbers(n=n).map(double).agg(total).next(inc).next(square)


@flow
def maps_in_sequence(n: int = 3):
    return numbers(n=n).map(square).agg(total).next(to_range).map(double).agg(total)


@flow
def reused_step(value: int = 3):
    return start(value=value).next(inc).next(inc).next(inc)


@flow
def params_by_name(n: int = 3, factor: int = 10, prefix: str = "x", upper: bool = False):
    # `n` is bound at the call site; `factor`, `prefix` and `upper` reach steps by name.
    return numbers(n=n).map(scale).agg(label)


@flow
def structured_params(n: int = 3, weights: dict[str, float] | None = None, names: list[str] | None = None):
    return numbers(n=n).next(settings, weights=weights, names=names)


@flow
def batched(n: int = 250):
    return numbers(n=n).map(square, batch_size=20, concurrency=8).agg(total)


@flow
def odd_items():
    return odd_things().map(identity).agg(describe)


@flow
def passthrough():
    return odd_things().map(identity)


@flow
def routes(origin: str = "a", destination: str = "b"):
    # Parameters inside a tuple, a list and a dict at the call site: filled in for every run.
    return make_route(route=(origin, destination), via=[destination, origin], labels={"from": origin})


@flow
def dated(day: dt.date = dt.date(2026, 1, 3), at: dt.datetime | None = None):
    # Dates and datetimes as parameters: ISO text on the command line and in the execution input.
    return days_until(day=day, at=at).map(weekday).agg(week)


@flow
def timed(start: dt.time = dt.time(9, 0), until: dt.time | None = None):
    # Times as parameters: ISO text (`09:30`) on the command line and in the execution input.
    return half_hours(start=start, until=until).map(o_clock).agg(week)


@flow
def enum_params(level: Level = Level.LOW):
    # An Enum parameter: by value or name on the command line, its name's text in the execution input.
    return repeat_level(level=level).map(square).agg(total)


@flow
def layout_names(n: int = 3):
    return items(n=n).map(manifest).next(failures).agg(todo).map(output).next(run).agg(lock)


SHAPES: dict[str, tuple[Any, dict[str, Any], Any]] = {
    "linear": (linear, {"value": 4}, ((4 + 1) * 2) + 1),
    "map_agg": (map_agg, {"n": 5}, sum(x * x for x in range(1, 6))),
    "inner_chain": (inner_chain, {}, sum((x + 1) * 2 for x in range(1, 7))),
    "open_map": (open_map, {"n": 4}, [1, 4, 9, 16]),
    "open_map_chain": (open_map_chain, {}, [4, 9, 16, 25]),
    "after_agg": (after_agg, {"n": 4}, (sum(x * 2 for x in range(1, 5)) + 1) ** 2),
    "maps_in_sequence": (maps_in_sequence, {"n": 3}, sum(x * 2 for x in range(14))),
    "reused_step": (reused_step, {"value": 3}, 6),
    "params_by_name": (params_by_name, {"n": 3, "factor": 10, "upper": True}, "X10,X20,X30"),
    "structured_params": (
        structured_params,
        {"weights": {"sum": 0.5}, "names": ["b", "a"]},
        {"sum": 3.0, "names": ["a", "b"]},
    ),
    "batched": (batched, {"n": 250}, sum(x * x for x in range(1, 251))),
    "odd_items": (odd_items, {}, ["bytes", "tuple", "datetime", "Decimal", "set", "NoneType"]),
    "passthrough": (passthrough, {}, odd_things.func()),
    "layout_names": (layout_names, {"n": 3}, sum(2 * (v - 1) for v in [10, 20, 30, 3])),
    "routes": (routes, {"destination": "z"}, "a->z->a->z [('from', 'a')]"),
    "dated": (dated, {"day": "2026-03-02", "at": "2026-02-27T23:30:00+00:00"}, "Fri Sat Sun Mon"),
    "enum_params": (enum_params, {"level": "HIGH"}, 3 * 2**2),
    "timed": (timed, {"start": "09:30", "until": "11:00:00"}, "09h30 10h00 10h30 11h00"),
}


# A retry that waits 0 s keeps local tests fast; the ASL compiler raises it to 1 s.
FAST_RETRY = Retry(retries=2, interval=0, backoff=1.0, exceptions=(ValueError,))
