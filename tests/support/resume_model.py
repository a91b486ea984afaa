"""Random flows, failures and edits for the resume property tests, with a model of what a resume
must recompute.

A `Version` is one version of a generated flow module: a source list, a map with one or two body
steps (tolerating failed items: a failing item fails its whole batch), an aggregation that returns
a list, a second map and a final aggregation. Each step logs every call (step, input) to
`calls.log` next to the module, and fails for the inputs `fail.json` lists (a flaky service, not
code: the fingerprint cannot see it).

`expected_calls` is the specification: a step (or a map item's body) is computed again exactly
when it has no output from the first run, or its code changed, or the content of its input changed;
options that cannot change a result (memory, timeout, batch size) and comments change nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

MODULE = """
import json
from pathlib import Path

from lokki_sam import flow, step

HERE = Path(__file__).parent


def called(name, value):
    with open(HERE / "calls.log", "a") as fh:
        fh.write(json.dumps([name, value]) + "\\n")


def failing(name, value):
    path = HERE / "fail.json"
    return path.exists() and value in json.loads(path.read_text()).get(name, [])


@step(memory={memory})
def source(n: int = 5) -> list[int]:
    called("source", n)
    return [x * {source_mul} + {source_add} for x in range(n)]


@step(timeout={timeout})
def first(x: int) -> int:
    called("first", x)
    if failing("first", x):
        raise ValueError(f"first cannot take {{x}}")
    return x * {first_mul} + {first_add}  # {comment}


@step
def second(x: int) -> int:
    called("second", x)
    return x + {second_add}


@step
def gather(xs: list[int]) -> list[int]:
    called("gather", xs)
    if failing("gather", len(xs)):
        raise ValueError("gather is not ready")
    return [v % 7 + {gather_add} for v in xs]


@step
def third(x: int) -> int:
    called("third", x)
    return x * {third_mul}


@step
def final(xs: list[int]) -> int:
    called("final", xs)
    if failing("final", len(xs)):
        raise ValueError("final is not ready")
    return sum(xs) * 1000 + len(xs) + {final_add}


@flow
def prop(n: int = 5):
    return (
        source(n=n)
        .map(first, batch_size={batch_size}, tolerated_failure_count=100)
        {second_call}
        .agg(gather)
        .map(third)
        .agg(final)
    )
"""

CODE = ("source_mul", "source_add", "first_mul", "first_add", "second_add", "gather_add", "third_mul", "final_add")
NO_RESULT = ("memory", "timeout", "batch_size", "comment")  # options and text that cannot change a result
EDITABLE_OPTIONS = NO_RESULT


@dataclass(frozen=True)
class Version:
    source_mul: int = 1
    source_add: int = 0
    first_mul: int = 2
    first_add: int = 1
    second_add: int = 3
    with_second: bool = True
    gather_add: int = 0
    third_mul: int = 3
    final_add: int = 0
    memory: int = 512
    timeout: int = 60
    batch_size: int = 1
    comment: str = "as written"

    def text(self) -> str:
        values = dataclasses.asdict(self)
        values["second_call"] = ".next(second)" if self.with_second else ""
        return MODULE.format(**values)

    # ------------------------------------------------------------------ the model

    def source_out(self, n: int) -> list[int]:
        return [x * self.source_mul + self.source_add for x in range(n)]

    def body(self, x: int) -> int:
        y = x * self.first_mul + self.first_add
        return y + self.second_add if self.with_second else y

    def gather_out(self, xs: list[int]) -> list[int]:
        return [v % 7 + self.gather_add for v in xs]

    def final_out(self, xs: list[int]) -> int:
        return sum(xs) * 1000 + len(xs) + self.final_add


@dataclass(frozen=True)
class Failures:
    first: frozenset[int] = frozenset()  # inputs of `first` that fail (tolerated; with their batch)
    gather: bool = False  # the aggregation fails (the run stops after the tolerated map)
    final: bool = False

    def write(self, folder: Path, lengths: tuple[int, int]) -> None:
        """fail.json for these failures; `lengths` are the list lengths gather and final receive."""
        spec: dict[str, list[int]] = {"first": sorted(self.first)}
        if self.gather:
            spec["gather"] = [lengths[0]]
        if self.final:
            spec["final"] = [lengths[1]]
        (folder / "fail.json").write_text(json.dumps(spec))


@dataclass
class Trace:
    """What a run computed, as the model sees it: per step, the inputs it was called with, and
    the outputs that exist at its end (what a resume may reuse)."""

    calls: Counter[tuple[str, Any]] = field(default_factory=Counter)
    items: dict[str, dict[int, tuple[Any, Version]]] = field(default_factory=dict)  # map -> item -> (input, code)
    tasks: dict[str, tuple[Any, Version]] = field(default_factory=dict)  # task -> (input, code it ran)
    result: Any = None
    failed: bool = False


def simulate(version: Version, n: int, failures: Failures, before: Trace | None = None) -> Trace:
    """Run the model of the flow (a resume when `before` is given): which calls happen and what
    is stored. Mirrors the specification in this module's docstring, step by step."""
    trace = Trace()
    prior = before or Trace()

    def task(name: str, value: Any, same: Callable[[Version, Version], bool]) -> bool:
        """Whether `name` runs (True) or is reused, recording the call."""
        kept = prior.tasks.get(name)
        reuse = kept is not None and kept[0] == value and same(kept[1], version)
        trace.tasks[name] = (value, version)
        if not reuse:
            trace.calls[(name, _key(value))] += 1
        return not reuse

    task("source", n, lambda a, b: (a.source_mul, a.source_add) == (b.source_mul, b.source_add))
    items = version.source_out(n)
    results = _map(trace, prior, "first", items, version, failures)
    present = [results[i] for i in sorted(results)]
    lengths = (len(present), 0)
    trace_gather = task("gather", present, lambda a, b: a.gather_add == b.gather_add)
    if failures.gather and trace_gather:
        trace.tasks.pop("gather")
        trace.failed = True
        return trace
    second_items = version.gather_out(present)
    third = _map(trace, prior, "third", second_items, version, Failures())
    finals = [third[i] for i in sorted(third)]
    lengths = (lengths[0], len(finals))
    ran_final = task("final", finals, lambda a, b: a.final_add == b.final_add)
    if failures.final and ran_final:
        trace.tasks.pop("final")
        trace.failed = True
        return trace
    trace.result = version.final_out(finals)
    return trace


def _map(
    trace: Trace, prior: Trace, name: str, items: list[int], version: Version, failures: Failures
) -> dict[int, int]:
    """A map's body over `items`: an item is reused only if its whole body stored an output in the
    run before, from the same input and the same body code. The others run in batches of the
    map's batch size (by position, as the local runner and a first execution cut them); a batch in
    which an item fails stores nothing (resumes with failures left use batch size 1: a cloud resume
    batches only the items it runs, so batch-mates differ there)."""
    before = prior.items.get(name, {})
    trace.items[name] = {}
    out: dict[int, int] = {}
    size = version.batch_size if name == "first" else 1
    for start in range(0, len(items), size):
        todo = []
        for index in range(start, min(start + size, len(items))):
            value = items[index]
            kept = before.get(index)
            if kept is not None and kept[0] == value and _same_body(name, kept[1], version):
                trace.items[name][index] = kept
                out[index] = _body(name, value, version)
            else:
                todo.append(index)
        failed = False
        for index in todo:  # the step is called item by item until one raises
            trace.calls[(name, items[index])] += 1
            if name == "first" and items[index] in failures.first:
                failed = True
                break
        if failed:
            continue
        for index in todo:
            value = items[index]
            if name == "first" and version.with_second:
                trace.calls[("second", value * version.first_mul + version.first_add)] += 1
            trace.items[name][index] = (value, version)
            out[index] = _body(name, value, version)
    return out


def present_after(version: Version, n: int, failures: Failures) -> int:
    """How many items the first map passes on in a first run with these item failures."""
    return len(simulate(version, n, Failures(failures.first)).items["first"])


def _body(name: str, value: int, version: Version) -> int:
    return version.body(value) if name == "first" else value * version.third_mul


def _same_body(name: str, before: Version, now: Version) -> bool:
    """Whether the body's last step now has an output stored for the item by `before`: every step of
    the body up to it has the same code (a step removed from the end leaves the one before last)."""
    if name == "third":
        return before.third_mul == now.third_mul
    same_first = (before.first_mul, before.first_add) == (now.first_mul, now.first_add)
    if not now.with_second:
        return same_first
    return same_first and before.with_second and before.second_add == now.second_add


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def read_calls(folder: Path) -> Counter[tuple[str, Any]]:
    """The calls logged since the last read (the log is emptied)."""
    log = folder / "calls.log"
    if not log.exists():
        return Counter()
    calls: Counter[tuple[str, Any]] = Counter()
    for line in log.read_text().splitlines():
        name, value = json.loads(line)
        calls[(name, _key(value))] += 1
    log.unlink()
    return calls


# ------------------------------------------------------------------------ strategies

small = st.integers(min_value=-3, max_value=4)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, Version, Failures, Version, Failures]:
    """(n, the first version, its failures, the edited version, the failures left for the resume)."""
    n = draw(st.integers(min_value=0, max_value=6))
    first = Version(
        source_mul=draw(small),
        source_add=draw(small),
        first_mul=draw(small),
        first_add=draw(small),
        second_add=draw(small),
        with_second=draw(st.booleans()),
        gather_add=draw(small),
        third_mul=draw(small),
        final_add=draw(small),
        batch_size=draw(st.sampled_from([1, 2, 3])),
    )
    inputs = first.source_out(n)
    failing = draw(st.sets(st.sampled_from(inputs), max_size=2)) if inputs else set()
    # The first run must fail, or there is nothing to resume: a tolerated map, then a failing task.
    stop_at = draw(st.sampled_from(["gather", "final"]))
    failures = Failures(frozenset(failing), gather=stop_at == "gather", final=stop_at == "final")
    edits: dict[str, Any] = {}
    for name in draw(st.sets(st.sampled_from(CODE + EDITABLE_OPTIONS + ("with_second",)), max_size=3)):
        if name == "with_second":
            edits[name] = not first.with_second
        elif name == "comment":
            edits[name] = "edited comment"
        elif name == "memory":
            edits[name] = 2048
        elif name == "timeout":
            edits[name] = 600
        elif name == "batch_size":
            edits[name] = draw(st.sampled_from([1, 2, 4]))
        else:
            edits[name] = draw(small)
    edited = dataclasses.replace(first, **edits)
    still = draw(st.sets(st.sampled_from(sorted(failing)), max_size=len(failing))) if failing else set()
    if edited.batch_size > 1:
        still = set()  # see _map: batch-mates of a failing item differ between a local and a cloud resume
    return n, first, failures, edited, Failures(frozenset(still))
