"""The fingerprint sees what determines a step's result, and only that (issue 21, items 2 and 3).

Each case writes a small project, computes its fingerprints, edits one thing, writes the edited
project to another folder and computes them again: an edit that can change what a step computes
must change its node's fingerprint; an edit that cannot (comments, formatting, sizing options, the
folder the project is in) must change nothing. The resume cases run the real command on the same
kinds of edits; the cross-version case runs every Python found here, importing the flow two ways.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokki_sam import source
from lokki_sam.fingerprint import RESULT_MAP_OPTIONS, RESULT_OPTIONS, Fingerprints, compute, value_fingerprint
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.options import MapOptions, StepOptions
from lokki_sam.project_code import is_project_file
from tests.test_correctness import COUNTING, check_resume_after_edit, run_id_of

Lokki = Callable[..., subprocess.CompletedProcess[str]]
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def imported(folder: Path, name: str, *extra_path: Path) -> Iterator[ModuleType]:
    """`name` imported from `folder`; every module it imported is forgotten afterwards."""
    saved, before = list(sys.path), set(sys.modules)
    sys.path[:0] = [str(folder), *map(str, extra_path)]
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(name)
    finally:
        sys.path[:] = saved
        for added in set(sys.modules) - before:
            del sys.modules[added]


def write_project(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def fingerprints_of(root: Path, files: Mapping[str, str]) -> tuple[Fingerprints, FlowGraph]:
    with imported(write_project(root, files), "flow") as module:
        graph = module.pipeline.graph
        return compute(graph), graph


def flow_file(prelude: str = "", target: str = "", call: str = "source().map(target)", head: str = "") -> str:
    """A flow module: `source` feeds a map over `target` (defined by `target` or `prelude`)."""
    parts = [
        "from lokki_sam import flow, step",
        textwrap.dedent(prelude),
        "@step\ndef source() -> list[int]:\n    return [1, 2, 3]",
        textwrap.dedent(target),
        f"@flow\ndef pipeline({head}):\n    return {call}",
    ]
    return "\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"


PLAIN = "@step\ndef target(x: int) -> int:\n    return x + 1\n"


@dataclasses.dataclass(frozen=True)
class Case:
    files: Mapping[str, str]
    edits: tuple[tuple[str, str, str], ...]  # (file, old, new)
    target_changes: bool  # the map step's own fingerprint
    flow_changes: bool | None = None  # None: as the target's

    def edited(self) -> dict[str, str]:
        files = dict(self.files)
        for name, old, new in self.edits:
            assert old in files[name], f"{old!r} not in {name}"
            files[name] = files[name].replace(old, new)
        return files


def changes(files: Mapping[str, str], *edits: tuple[str, str, str], flow: bool | None = None) -> Case:
    return Case(files, edits, True, flow)


def keeps(files: Mapping[str, str], *edits: tuple[str, str, str], flow: bool | None = None) -> Case:
    return Case(files, edits, False, flow)


FACTORY_DEFAULT = """
def make(k):
    @step
    def target(x: int, k=k) -> int:
        return x * k
    return target
"""
FACTORY_KWDEFAULT = FACTORY_DEFAULT.replace("x: int, k=k", "x: int, *, k=k")
BOUND = """
class Scaler:
    def __init__(self, k):
        self.k = k
    def target(self, x: int) -> int:
        return x * self.k
"""
SLOTTED = BOUND.replace("class Scaler:", "class Scaler:\n    __slots__ = ('k',)")
CALLABLE = """
class Target:
    def __init__(self, k):
        self.k = k
        self.__name__ = "target"
    def __call__(self, x: int) -> int:
        return x * self.k
"""
PARTIAL = """
import functools
def scaled(k, x):
    return x * k
target = functools.partial(scaled, 2)
target.__name__ = "target"
target = step(target)
"""
TAKES_FN = "@step\ndef target(x: int, fn) -> int:\n    return fn(x)\n"
NAMESPACE_HELPER = {"parts/calc.py": "def f(v):\n    return v * 2\n"}  # parts/ has no __init__.py
HELPERS = {"helpers.py": "# helpers\nimport os\n\nBASE = 2\n\ndef f(v):\n    return v * BASE\n"}

CASES: dict[str, Case] = {
    # --- edits that change what the step computes
    "body": changes({"flow.py": flow_file(target=PLAIN)}, ("flow.py", "x + 1", "x + 2")),
    "string literal spaces": changes(
        {"flow.py": flow_file(target="@step\ndef target(x):\n    return f'{x}  !'\n")}, ("flow.py", "  !", " !")
    ),
    "string literal blank line": changes(
        {"flow.py": flow_file(target='@step\ndef target(x):\n    return """a\n\nb""" * x\n')},
        ("flow.py", "a\n\nb", "a\nb"),
    ),
    "string literal trailing space": changes(
        {"flow.py": flow_file(target='@step\ndef target(x):\n    return """a \nb""" * x\n')},
        ("flow.py", "a \nb", "a\nb"),
    ),
    "docstring": changes(
        {"flow.py": flow_file(target='@step\ndef target(x):\n    """Add one."""\n    return x + 1\n')},
        ("flow.py", "Add one.", "Add two."),
    ),
    "factory default": changes(
        {"flow.py": flow_file(prelude=FACTORY_DEFAULT + "target = make(2)")}, ("flow.py", "make(2)", "make(3)")
    ),
    "factory keyword default": changes(
        {"flow.py": flow_file(prelude=FACTORY_KWDEFAULT + "target = make(2)")}, ("flow.py", "make(2)", "make(3)")
    ),
    "closure": changes(
        {"flow.py": flow_file(prelude=FACTORY_DEFAULT.replace(", k=k", "") + "target = make(2)")},
        ("flow.py", "make(2)", "make(3)"),
    ),
    "bound instance": changes(
        {"flow.py": flow_file(prelude=BOUND + "target = step(Scaler(2).target)")}, ("flow.py", "Scaler(2)", "Scaler(3)")
    ),
    "bound instance with slots": changes(
        {"flow.py": flow_file(prelude=SLOTTED + "target = step(Scaler(2).target)")},
        ("flow.py", "Scaler(2)", "Scaler(3)"),
    ),
    "bound instance's class": changes(
        {"flow.py": flow_file(prelude=BOUND + "target = step(Scaler(2).target)")},
        ("flow.py", "x * self.k", "x + self.k"),
    ),
    "callable instance": changes(
        {"flow.py": flow_file(prelude=CALLABLE + "target = step(Target(2))")}, ("flow.py", "Target(2)", "Target(3)")
    ),
    "partial argument": changes({"flow.py": flow_file(prelude=PARTIAL)}, ("flow.py", "(scaled, 2)", "(scaled, 3)")),
    "partial function": changes({"flow.py": flow_file(prelude=PARTIAL)}, ("flow.py", "x * k", "x + k")),
    "call-site function's code": changes(
        {"flow.py": flow_file("def helper(v):\n    return v + 1\n", TAKES_FN, "source().map(target, fn=helper)")},
        ("flow.py", "v + 1", "v + 2"),
    ),
    "call-site class's code": changes(
        {
            "flow.py": flow_file(
                "class Kind(int):\n    def __new__(cls, v):\n        return int.__new__(cls, v + 1)\n",
                TAKES_FN,
                "source().map(target, fn=Kind)",
            )
        },
        ("flow.py", "v + 1", "v + 2"),
    ),
    "call-site constant": changes(
        {
            "flow.py": flow_file(
                target=TAKES_FN.replace("fn)", "k)").replace("fn(x)", "x * k"), call="source().map(target, k=2)"
            )
        },
        ("flow.py", "k=2", "k=3"),
    ),
    "call-site instance": changes(
        {"flow.py": flow_file(BOUND, TAKES_FN, "source().map(target, fn=Scaler(2).target)")},
        ("flow.py", "Scaler(2)", "Scaler(3)"),
    ),
    "parameter declaration": changes(
        {"flow.py": flow_file(target=TAKES_FN, call="source().map(target, fn=k)", head="k: int = 2")},
        ("flow.py", "k: int = 2", "k: int = 3"),
    ),
    "import inside the body": changes(
        {
            **HELPERS,
            "flow.py": flow_file(target="@step\ndef target(x):\n    import helpers\n    return helpers.f(x)\n"),
        },
        ("helpers.py", "BASE = 2", "BASE = 3"),
    ),
    "from-import of a namespace package inside the body": changes(
        {
            **NAMESPACE_HELPER,
            "flow.py": flow_file(target="@step\ndef target(x):\n    from parts import calc\n    return calc.f(x)\n"),
        },
        ("parts/calc.py", "v * 2", "v * 3"),
    ),
    "namespace package imported at module level": changes(
        {
            **NAMESPACE_HELPER,
            "flow.py": flow_file("import parts.calc", "@step\ndef target(x):\n    return parts.calc.f(x)\n"),
        },
        ("parts/calc.py", "v * 2", "v * 3"),
    ),
    "module a project module imports": changes(
        {
            **NAMESPACE_HELPER,
            "helpers.py": "from parts.calc import f\n\ndef g(v):\n    return f(v) + 1\n",
            "flow.py": flow_file("import helpers", "@step\ndef target(x):\n    return helpers.g(x)\n"),
        },
        ("parts/calc.py", "v * 2", "v * 3"),
    ),
    "relative import in a package": changes(
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .b import g\n\ndef f(v):\n    return g(v)\n",
            "pkg/b.py": "def g(v):\n    return v * 2\n",
            "flow.py": flow_file("from pkg.a import f", "@step\ndef target(x):\n    return f(x)\n"),
        },
        ("pkg/b.py", "v * 2", "v * 3"),
    ),
    "helper's decorator": changes(
        {
            "flow.py": flow_file(
                "def twice(fn):\n    def wrapper(v):\n        return fn(fn(v))\n    return wrapper\n\n"
                "@twice\ndef helper(v):\n    return v + 1\n",
                "@step\ndef target(x):\n    return helper(x)\n",
            )
        },
        ("flow.py", "fn(fn(v))", "fn(v)"),
    ),
    "helper's class-based decorator": changes(
        {
            "flow.py": flow_file(
                "import functools\n\nclass times:\n    def __init__(self, fn):\n        self.fn = fn\n"
                "        functools.update_wrapper(self, fn)\n\n"
                "    def __call__(self, v):\n        return self.fn(v) * 2\n\n"
                "@times\ndef helper(v):\n    return v + 1\n",
                "@step\ndef target(x):\n    return helper(x)\n",
            )
        },
        ("flow.py", "self.fn(v) * 2", "self.fn(v) * 3"),
    ),
    "class attribute changed at module level": changes(
        {"flow.py": flow_file("class C:\n    k = 2\n\nC.k = 5", "@step\ndef target(x):\n    return x * C.k\n")},
        ("flow.py", "C.k = 5", "C.k = 6"),
    ),
    "header of the block binding a constant": changes(
        {"flow.py": flow_file("if True:\n    K = 2\nelse:\n    K = 3", "@step\ndef target(x):\n    return x * K\n")},
        ("flow.py", "if True:", "if False:"),
    ),
    "library function swapped": changes(
        {"flow.py": flow_file("from math import floor as rnd", "@step\ndef target(x):\n    return rnd(x / 2)\n")},
        ("flow.py", "floor", "ceil"),
    ),
    "enum value": changes(
        {
            "flow.py": flow_file(
                "import enum\n\nclass Mode(enum.Enum):\n    A = 1\n",
                "@step\ndef target(x, mode=Mode.A):\n    return x * mode.value\n",
            )
        },
        ("flow.py", "A = 1", "A = 2"),
    ),
    "dataclass default in a closure": changes(
        {
            "flow.py": flow_file(
                "import dataclasses\n\n@dataclasses.dataclass\nclass Config:\n    k: int = 2\n\n"
                "def make(config):\n    @step\n    def target(x):\n        return x * config.k\n    return target\n\n"
                "target = make(Config())",
            )
        },
        ("flow.py", "k: int = 2", "k: int = 3"),
    ),
    "requirements": changes(
        {"flow.py": flow_file(target=PLAIN.replace("@step", '@step(requirements=["six==1.16.0"])'))},
        ("flow.py", "1.16.0", "1.17.0"),
    ),
    "environment": changes(
        {"flow.py": flow_file(target=PLAIN.replace("@step", '@step(environment={"MODE": "a"})'))},
        ("flow.py", '"a"', '"b"'),
    ),
    "input: a map item, or the whole list": changes(
        {"flow.py": flow_file(target=PLAIN)}, ("flow.py", "source().map(target)", "source().next(target)")
    ),
    # --- edits that cannot change what the step computes
    "nothing (another folder)": keeps({"flow.py": flow_file(target=PLAIN)}),
    "comment in the step": keeps(
        {"flow.py": flow_file(target=PLAIN)}, ("flow.py", "    return x + 1", "    # add one\n    return x + 1  # one")
    ),
    "blank lines and comments around": keeps(
        {"flow.py": flow_file(target=PLAIN)}, ("flow.py", "@step\ndef target", "\n\n# the target\n\n@step\ndef target")
    ),
    "reformatted": keeps(
        {"flow.py": flow_file(target=PLAIN)}, ("flow.py", "return x + 1", "return (\n        x\n        + 1\n    )")
    ),
    "sizing options": keeps(
        {"flow.py": flow_file(target=PLAIN)},
        ("flow.py", "@step\ndef target", '@step(memory=2048, timeout=60, retry=3, architecture="arm64")\ndef target'),
    ),
    "step decorator spelled another way": keeps(
        {"flow.py": flow_file(target=PLAIN)},
        (
            "flow.py",
            "@step\ndef target",
            "import lokki_sam\n\n@lokki_sam.step(memory=1024, package='image')\ndef target",
        ),
    ),
    "map sizing options": keeps(
        {"flow.py": flow_file(target=PLAIN)},
        ("flow.py", "map(target)", 'map(target, concurrency=4, batch_size=10, execution_type="EXPRESS")'),
    ),
    "another step's body": keeps({"flow.py": flow_file(target=PLAIN)}, ("flow.py", "[1, 2, 3]", "[4, 5]"), flow=True),
    "moved down": keeps(
        {"flow.py": flow_file(target=PLAIN)},
        ("flow.py", "@step\ndef target", "def unused():\n    return 1\n\n\n@step\ndef target"),
    ),
    "comment in an imported project module": keeps(
        {**HELPERS, "flow.py": flow_file("import helpers", "@step\ndef target(x):\n    return helpers.f(x)\n")},
        ("helpers.py", "# helpers", "# the helpers, commented\n\n"),
    ),
    "unrelated module-level statement": keeps(
        {"flow.py": flow_file("K = 2\nOTHER = 1", "@step\ndef target(x):\n    return x * K\n")},
        ("flow.py", "OTHER = 1", "OTHER = 5"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_an_edit_changes_the_fingerprint_exactly_when_it_can_change_the_result(tmp_path: Path, case: Case) -> None:
    before, graph = fingerprints_of(tmp_path / "before", case.files)
    after, _ = fingerprints_of(tmp_path / "after", case.edited())
    target = graph.maps[0].nodes[0].id if graph.maps else graph.stages[-1].id
    flow_changes = case.target_changes if case.flow_changes is None else case.flow_changes
    assert (before.nodes[target] != after.nodes.get(target)) is case.target_changes
    assert (before.flow != after.flow) is flow_changes
    assert before.opaque == after.opaque == {}


def test_a_node_does_not_carry_its_upstream(tmp_path: Path) -> None:
    """The input's identity (lineage.py) stands for what the upstream code made: an edit upstream
    leaves the nodes after it as they are, so only the outputs whose input changed are recomputed."""
    files = {"flow.py": flow_file(target=PLAIN, call="source().map(target).agg(total)", prelude="")}
    files["flow.py"] = files["flow.py"].replace("@flow", "@step\ndef total(xs):\n    return sum(xs)\n\n@flow")
    before, _ = fingerprints_of(tmp_path / "before", files)
    edited = {"flow.py": files["flow.py"].replace("[1, 2, 3]", "[4]")}
    after, _ = fingerprints_of(tmp_path / "after", edited)
    assert before.nodes["source"] != after.nodes["source"]
    assert before.nodes["target"] == after.nodes["target"] and before.nodes["total"] == after.nodes["total"]


# ------------------------------------------------------------------ the description of code


STATEMENTS = [
    "total = 0",
    "for i in range(n):\n    total += i * 2",
    "if total > 3:\n    total -= 1\nelse:\n    total = -total",
    "text = f'{total:>{n}}|{n!r}'",
    "items = [t for t in (total, n) if t]",
    "return items, text",
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(STATEMENTS)), st.sampled_from(["", "# a comment", "#", "# x = 1  # no"])),
        max_size=6,
    ),
    st.booleans(),
)
def test_comments_and_blank_lines_never_count(inserted: list[tuple[int, str]], parenthesize: bool) -> None:
    def function(statements: list[str]) -> str:
        return "def f(n):\n" + textwrap.indent("\n".join(statements), "    ") + "\n"

    plain = function(STATEMENTS)
    noisy = list(STATEMENTS)
    for position, line in sorted(inserted, reverse=True):
        noisy.insert(position, line)
    if parenthesize:
        noisy = [s.replace("total = 0", "total = (\n    0\n)") for s in noisy]
    assert source.dump(source.parse(plain).tree) == source.dump(source.parse(function(noisy)).tree)  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(st.text(st.sampled_from(" \t\nab#"), min_size=1, max_size=12), st.text(st.sampled_from(" \t\nab#"), max_size=12))
def test_string_literals_count_exactly(text: str, other: str) -> None:
    def module(value: str) -> str:
        return f"def f():\n    return {value!r}\n\n\nX = '''{value}'''\n"

    same = source.dump(source.parse(module(text)).tree) == source.dump(source.parse(module(other)).tree)  # type: ignore[union-attr]
    assert same is (text == other)


def test_the_step_decorator_is_not_code_but_other_decorators_are(tmp_path: Path) -> None:
    base = flow_file("import functools", PLAIN)
    cached = base.replace("@step\ndef target", "@step(memory=256)\n@functools.lru_cache\ndef target")
    sized = cached.replace("@step(memory=256)", "@step(memory=4096, timeout=900)")
    bare = cached.replace("@functools.lru_cache\n", "")
    fps = [
        fingerprints_of(tmp_path / str(i), {"flow.py": text})[0].nodes["target"]
        for i, text in enumerate([cached, sized, bare])
    ]
    assert fps[0] == fps[1] != fps[2]


# ------------------------------------------------------------------------------- values


SIMPLE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=80),
    st.complex_numbers(allow_nan=False, max_magnitude=1e6),
)
HASHABLE = st.recursive(SIMPLE, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6)
VALUES = st.recursive(
    SIMPLE,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.sets(HASHABLE, max_size=3)
        | st.dictionaries(HASHABLE, inner, max_size=3)
    ),
    max_leaves=12,
)


def same_value(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down, floats by their bits (nan is nan, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex()
    if isinstance(a, complex):
        return same_value(a.real, b.real) and same_value(a.imag, b.imag)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same_value(x, y) for y in b) for x in a)
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same_value(k, k2) and same_value(v, v2) for k2, v2 in b.items()) for k, v in a.items()
        )
    return bool(a == b)


@settings(max_examples=200, deadline=None)
@given(VALUES, VALUES)
def test_a_value_is_described_exactly(value: Any, other: Any) -> None:
    digest, why = value_fingerprint(value)
    assert why is None and digest is not None
    assert value_fingerprint(copy.deepcopy(value))[0] == digest
    assert (value_fingerprint(other)[0] == digest) is same_value(value, other)


@pytest.mark.cli
def test_sets_and_dicts_give_one_fingerprint_whatever_the_string_hashing() -> None:
    """Set order follows string hashing, which differs per process (PYTHONHASHSEED)."""
    probe = (
        "from lokki_sam.fingerprint import value_fingerprint; "
        "words = {w for w in 'alpha beta gamma delta epsilon zeta eta theta'.split()}; "
        "print(list(words)[:3], value_fingerprint([words, dict.fromkeys(words, 1), frozenset(words)])[0])"
    )
    outputs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        outputs.append(done.stdout.split("] ")[1].strip())
        assert outputs[-1] == outputs[0]


class Counter:
    def __init__(self, start: int) -> None:
        self.start = start
        self.path = Path("in") / "x.csv"

    def count(self, x: int) -> int:
        return x + self.start


@pytest.mark.parametrize(
    ("value", "other"),
    [
        (Counter(1), Counter(2)),  # a project class's instance, by its state
        (Counter(1).count, Counter(2).count),  # a bound method, with its instance
        (math.floor, math.ceil),  # library functions by their public names
        (Path("a"), Path("b")),
        (dataclasses.replace(MapOptions(), concurrency=2), MapOptions()),
        (textwrap.dedent, textwrap.indent),
        (str.upper, str.lower),
        ([1, (2, 3)], [1, [2, 3]]),
    ],
    ids=["instance", "bound method", "builtin", "path", "dataclass", "library function", "method descriptor", "types"],
)
def test_objects_are_described_by_what_rebuilds_them(value: Any, other: Any) -> None:
    first, why = value_fingerprint(value)
    assert why is None
    assert value_fingerprint(copy.copy(value) if not callable(value) else value)[0] == first
    assert value_fingerprint(other)[0] != first


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (threading.Lock, "(a _thread.lock)"),
        (lambda: socket.socket(), "(a socket.socket)"),
        (lambda: (i for i in range(3)), "(a builtins.generator)"),
        (lambda: {"conn": {"lock": threading.RLock()}}, "which holds a _thread.RLock at `['conn']['lock']`"),
    ],
    ids=["lock", "socket", "generator", "nested"],
)
def test_a_value_that_cannot_be_described_says_what_and_where(make: Callable[[], Any], shown: str) -> None:
    value = make()
    try:
        digest, why = value_fingerprint(value)
    finally:
        if isinstance(value, socket.socket):
            value.close()
    assert digest is None and why is not None
    assert shown in why and "the value" in why


OPAQUE_FLOW = flow_file(
    """
import threading

def make():
    guard = threading.Lock()

    @step
    def target(x: int) -> int:
        with guard:
            return x + 1
    return target

target = make()
"""
)


def test_a_step_holding_what_cannot_be_described_is_opaque_with_a_stable_marker(tmp_path: Path) -> None:
    first, _ = fingerprints_of(tmp_path / "a", {"flow.py": OPAQUE_FLOW})
    second, _ = fingerprints_of(tmp_path / "b", {"flow.py": OPAQUE_FLOW})
    assert first == second  # the marker is the type, the same in every process: the runtime agrees
    assert set(first.opaque) == {"target"}
    reason = first.opaque["target"]
    assert "step 'target'" in reason and "closure value `guard`" in reason and "_thread.lock" in reason
    assert "resume always recomputes this step" in reason


READER = """
class Reader:
    def __init__(self):
        self.handle = open(__file__)

    def target(self, x: int) -> int:
        return x + 1

target = step(Reader().target)
"""


def test_a_value_too_large_to_describe_is_opaque(monkeypatch: pytest.MonkeyPatch) -> None:
    from lokki_sam import describe

    monkeypatch.setattr(describe, "MAX_OBJECTS", 10)
    digest, why = value_fingerprint([[i] for i in range(20)])
    assert digest is None
    assert why == "the value (a builtins.list, which holds a builtins.list at `[9]`, too large to describe) " + (
        "cannot be described"
    )
    assert value_fingerprint([[i] for i in range(5)])[1] is None


def test_a_bound_instance_holding_an_open_file_is_opaque(tmp_path: Path) -> None:
    with imported(write_project(tmp_path, {"flow.py": flow_file(READER)}), "flow") as module:
        fps = compute(module.pipeline.graph)
        module.target.func.__self__.handle.close()
    assert "its bound instance" in fps.opaque["target"] and "at `.handle`" in fps.opaque["target"]


# ------------------------------------------------------------------------ options


def _with_options(graph: FlowGraph, **changed: Any) -> FlowGraph:
    """The graph with the map's first step's options changed (a fresh step object)."""
    from lokki_sam.dsl import Step

    block = graph.maps[0]
    node = block.nodes[0]
    new_step = Step(node.step.func, dataclasses.replace(node.step.options, **changed))
    new_node = dataclasses.replace(node, step=new_step)
    new_block = dataclasses.replace(block, nodes=(new_node, *block.nodes[1:]))
    return dataclasses.replace(graph, stages=tuple(new_block if s is block else s for s in graph.stages))


def _with_map_options(graph: FlowGraph, **changed: Any) -> FlowGraph:
    block = graph.maps[0]
    new_block = dataclasses.replace(block, options=dataclasses.replace(block.options, **changed))
    return dataclasses.replace(graph, stages=tuple(new_block if s is block else s for s in graph.stages))


def test_only_the_options_that_can_change_a_result_count(tmp_path: Path) -> None:
    """Every option not on the allow-list, present or added later, leaves every fingerprint alone."""
    with imported(write_project(tmp_path, {"flow.py": flow_file(target=PLAIN)}), "flow") as module:
        graph = module.pipeline.graph
        base = compute(graph)
        for option in dataclasses.fields(StepOptions):
            edited = compute(_with_options(graph, **{option.name: ("changed", option.name)}))
            assert (edited != base) is (option.name in RESULT_OPTIONS), option.name
        for option in dataclasses.fields(MapOptions):
            edited = compute(_with_map_options(graph, **{option.name: ("changed", option.name)}))
            assert (edited.flow != base.flow) is (option.name in RESULT_MAP_OPTIONS), option.name
            assert edited.nodes == base.nodes


# ------------------------------------------------------------------ identity by object


def test_two_step_objects_with_one_name_have_their_own_fingerprints(tmp_path: Path) -> None:
    """Built by hand: the builder may refuse such a flow, the fingerprint must not confuse them."""
    files = {
        "a.py": "from lokki_sam import step\n\n@step\ndef target(x):\n    return x + 1\n",
        "b.py": "from lokki_sam import step\n\n@step\ndef target(x):\n    return x * 2\n",
        "src.py": "from lokki_sam import step\n\n@step\ndef source():\n    return [1]\n",
    }
    with imported(write_project(tmp_path, files), "a") as a:
        b, src = importlib.import_module("b"), importlib.import_module("src")
        first = Node("target", a.target, (), "source", "map-target")
        second = Node("target-2", b.target, (), "target", "map-target")
        stages = (Node("source", src.source, (), None), MapBlock("map-target", "source", (first, second), MapOptions()))
        fps = compute(FlowGraph("pipeline", "flow", (), stages))
    assert fps.nodes["target"] != fps.nodes["target-2"]


def test_a_module_is_found_by_the_objects_not_by_its_name(tmp_path: Path) -> None:
    """Two files named flow.py loaded in one process (one name in sys.modules): each step is
    described from its own file, not from whichever module holds the name."""
    import importlib.util

    template = (
        "import dataclasses\nfrom lokki_sam import step\n\n"
        "@dataclasses.dataclass\nclass Settings:\n    k: int = {k}\n\n"
        "@step\ndef target(x, settings=Settings()):\n    return x * settings.k\n"
    )
    modules = []
    saved = sys.modules.get("flow")
    try:
        for folder, k in (("etl", 2), ("reports", 3)):
            path = write_project(tmp_path / folder, {"flow.py": template.format(k=k)}) / "flow.py"
            spec = importlib.util.spec_from_file_location("flow", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["flow"] = module
            spec.loader.exec_module(module)
            modules.append(module)
        from lokki_sam.fingerprint import code_fingerprint

        etl_now = code_fingerprint(modules[0].target)  # sys.modules["flow"] is reports now
        sys.modules["flow"] = modules[0]
        etl_alone = code_fingerprint(modules[0].target)
    finally:
        sys.modules.pop("flow", None)
        if saved is not None:
            sys.modules["flow"] = saved
    assert etl_now == etl_alone


def test_project_code_is_decided_from_the_file(tmp_path: Path) -> None:
    lib = tmp_path / "code" / "tinylib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "extra.py").write_text("")
    meta = tmp_path / "code" / "tinylib-1.0.dist-info"
    meta.mkdir()
    (meta / "RECORD").write_text("tinylib/__init__.py,,\ntinylib-1.0.dist-info/RECORD,,\n")
    (tmp_path / "code" / "flow.py").write_text("")
    assert is_project_file(str(tmp_path / "code" / "flow.py"))
    assert not is_project_file(str(lib / "__init__.py"))  # listed in a RECORD next to it: a library
    assert is_project_file(str(lib / "extra.py"))  # not listed: added by the user
    assert not is_project_file(json.__file__)  # the standard library
    assert not is_project_file(source.__file__)  # lokki-sam
    assert not is_project_file(pytest.__file__)  # site-packages


# ---------------------------------------------------------------- resume after an edit


E2E_FLOW = """
{prelude}

@step
def nums() -> list[int]:
    called("nums")
    return [1, 2, 3]

{weigh}

@step
def total(xs: list[int]) -> int:
    called("total")
    return sum(xs)

@flow
def project():
    return nums().map({call}).agg(total)
"""


def weigh(use: str, before: str = "", params: str = "x: int") -> str:
    return f"@step\ndef weigh({params}) -> int:\n    called(f'weigh-{{x}}')\n{before}    return {use}\n"


E2E: dict[str, tuple[dict[str, str], str, str, str, str, str]] = {
    # name: (other files, prelude, weigh, call, edited file, (old -> new))
    "default from a factory": (
        {},
        "def make(k):\n    @step\n    def weigh(x: int, k=k) -> int:\n        called(f'weigh-{x}')\n"
        "        return x * k\n    return weigh\n\nweigh = make(2)",
        "",
        "weigh",
        "project.py",
        "make(2)->make(5)",
    ),
    "bound instance": (
        {},
        "class Weights:\n    def __init__(self, k):\n        self.k = k\n\n    def weigh(self, x: int) -> int:\n"
        "        called(f'weigh-{x}')\n        return x * self.k\n\nweigh = step(Weights(2).weigh)",
        "",
        "weigh",
        "project.py",
        "Weights(2)->Weights(5)",
    ),
    "call-site function argument": (
        {},
        "def double(v):\n    return v * 2",
        weigh("fn(x)", params="x: int, fn"),
        "weigh, fn=double",
        "project.py",
        "v * 2->v * 7",
    ),
    "import inside the body": (
        {"helpers.py": "def f(v):\n    return v * 2\n"},
        "",
        weigh("helpers.f(x)", before="    import helpers\n"),
        "weigh",
        "helpers.py",
        "v * 2->v * 7",
    ),
    "namespace package": (
        {"parts/calc.py": "def f(v):\n    return v * 2\n"},
        "",
        weigh("calc.f(x)", before="    from parts import calc\n"),
        "weigh",
        "parts/calc.py",
        "v * 2->v * 7",
    ),
    "string literal whitespace": (
        {},
        "",
        weigh('x * len("""a\n\nb""")'),
        "weigh",
        "project.py",
        "a\n\nb->a\nb",
    ),
}


@pytest.mark.parametrize("case", E2E.values(), ids=E2E.keys())
def test_resume_after_an_edit_the_fingerprint_used_to_miss_recomputes(
    tmp_path: Path, lokki: Lokki, case: tuple[dict[str, str], str, str, str, str, str]
) -> None:
    """Each edit changed the result but not what the fingerprint read before (defaults, a bound
    instance, a call-site function, an import inside the body, a namespace package, whitespace in
    a string literal): the resume reused stale outputs. Now it recomputes what the edit reaches."""
    files, prelude, weigh, call, edited_file, edit = case
    write_project(tmp_path, files)
    path = tmp_path / "project.py"
    path.write_text(COUNTING + E2E_FLOW.format(prelude=prelude, weigh=weigh, call=call))
    check_resume_after_edit(lokki, path, tmp_path / edited_file, *edit.split("->"))


def test_resume_after_editing_one_of_two_steps_with_one_name_recomputes_it(tmp_path: Path, lokki: Lokki) -> None:
    """Two step objects named `weigh` (in two modules) shared the first one's fingerprint."""
    write_project(
        tmp_path,
        {
            "a.py": "from lokki_sam import step\n\n@step\ndef weigh(x: int) -> int:\n    return x + 1\n",
            "b.py": "from lokki_sam import step\n\n@step\ndef weigh(x: int) -> int:\n    return x * 2\n",
        },
    )
    path = tmp_path / "project.py"
    path.write_text(COUNTING + E2E_FLOW.format(prelude="import a\nimport b", weigh="", call="a.weigh).next(b.weigh"))
    first = lokki("run", str(path), "--store", "runs", "--json")
    if "two different steps are named" in first.stderr:
        pytest.skip("the builder refuses two step objects with one name")
    assert first.returncode == 0, first.stderr
    (tmp_path / "b.py").write_text((tmp_path / "b.py").read_text().replace("x * 2", "x * 3"))
    resumed = lokki("run", str(path), "--store", "runs", "--resume", run_id_of(first), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == sum((x + 1) * 3 for x in (1, 2, 3))


# ------------------------------------------------------------------ every Python, every import


PROBE = """
import importlib, json, os, sys
root, mode = sys.argv[1], sys.argv[2]
found = {}
for parent, folder, name in [("tests/flows", "kitchen", "flow"), ("", "examples", "birds"),
                             ("", "examples", "numeric"), ("", "examples", "wordcount")]:
    parent = os.path.join(root, parent)
    where = os.path.join(parent, folder)
    if mode == "flat":  # `flow` from its folder, as the local runner imports it
        sys.path[:0] = [where]
        module = importlib.import_module(name)
    else:  # `kitchen.flow` from the parent (its folder on the path too, for its own imports)
        sys.path[:0] = [parent, where]
        module = importlib.import_module(folder + "." + name)
    for value in vars(module).values():
        graph = getattr(value, "graph", None)
        if graph is not None and hasattr(graph, "fingerprints"):
            fps = graph.fingerprints
            found[graph.name] = [fps.flow, dict(fps.nodes), dict(fps.opaque)]
print(json.dumps(found, sort_keys=True))
"""


def pythons() -> list[str]:
    """python3.11, 3.12, 3.13 (and 3.14) found on PATH or under pyenv: never a fixed path."""
    import shutil

    found = {}
    root = (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        if shutil.which("pyenv")
        else ""
    )
    for minor in ("3.11", "3.12", "3.13", "3.14"):
        candidates = sorted(Path(root, "versions").glob(f"{minor}.*/bin/python{minor}")) if root else []
        on_path = shutil.which(f"python{minor}")
        for candidate in [*(str(c) for c in candidates), *([on_path] if on_path else [])]:
            if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
                found[minor] = candidate
                break
    return [found[m] for m in sorted(found)]


@pytest.mark.cli
def test_every_python_and_every_import_name_gives_one_fingerprint(tmp_path: Path) -> None:
    """The generator's Python and every Lambda runtime (3.11, 3.12, 3.13) compute the flows'
    fingerprints (the examples and a flow reaching code in every way described), with the module
    imported as `flow` from its folder or as `kitchen.flow` from its parent: all equal."""
    interpreters = pythons()
    if len(interpreters) < 2:
        pytest.skip(f"only {interpreters} found: need at least two Pythons to compare")
    results = {}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KITCHEN_"))}
    base.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    for number, python in enumerate(interpreters):
        for mode in ("flat", "package"):
            # Another environment (as in the Lambda) and another string hashing in every process.
            env = {**base, "PYTHONHASHSEED": str(number * 2 + len(mode))}
            if mode == "package":
                env.update(KITCHEN_FACTOR="7", KITCHEN_MODE="cloud")
            done = subprocess.run(
                [python, "-c", PROBE, str(REPO), mode], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{python} {mode}: {done.stderr}"
            results[(python, mode)] = json.loads(done.stdout)
    first = next(iter(results.values()))
    assert set(first) == {"kitchen", "birds", "pi", "zscores", "wordcount"}
    assert set(first["kitchen"][2]) == {"combine"}  # the lock in its closure
    for key, found in results.items():
        assert found == first, f"{key} differs from {next(iter(results))}"
