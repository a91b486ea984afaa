"""What a flow parameter is while the flow function runs at definition time: a placeholder.

The flow function runs once, when `@flow` decorates it, before any run has values. A parameter
passed to a step (`fetch(city=city)`, or inside a list, tuple, set or dict: `route=(a, b)`)
becomes a binding that every run fills in. Anything that needs the value itself (an f-string,
arithmetic, a comparison, `if`, indexing, a method call) is refused with the parameter named:
it would otherwise bake placeholder text into every result.
"""

from __future__ import annotations

from typing import Any, NoReturn

from lokki_sam.errors import FlowDefinitionError


class PlaceholderUsed(FlowDefinitionError, AttributeError):
    """A flow parameter was used as a value while the flow was being defined.

    Also an AttributeError, so `getattr(placeholder, name, default)` probes keep working."""


class Placeholder:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __repr__(self) -> str:
        return f"<flow parameter {self.name}>"

    def _refuse(self, what: str) -> NoReturn:
        raise PlaceholderUsed(
            f"flow parameter '{self.name}' is used in {what} while the flow is being defined, "
            "where it has no value yet",
            hint=f"pass it to a step and compute there: e.g. fetch({self.name}={self.name}) and build the "
            f"value inside `def fetch({self.name})`; lists, tuples, sets and dicts of parameters are fine",
        )

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # protocol probes (copy, pickle, inspect): behave like a plain object
            raise AttributeError(attribute)
        self._refuse(f"an attribute access (.{attribute})")

    def __setattr__(self, attribute: str, value: Any) -> None:
        self._refuse(f"an assignment (.{attribute} = ...)")

    def __bool__(self) -> bool:
        self._refuse("a condition (if/and/or/not)")

    def __format__(self, spec: str) -> str:
        self._refuse("a formatted string (f-string or str.format)")

    def __str__(self) -> str:
        self._refuse("str() or %-formatting")

    def __eq__(self, other: object) -> bool:
        self._refuse("a comparison (==)")

    def __ne__(self, other: object) -> bool:
        self._refuse("a comparison (!=)")

    def __hash__(self) -> int:
        self._refuse("a set element or dict key")

    def __iter__(self) -> Any:
        self._refuse("iteration or unpacking")

    def __len__(self) -> int:
        self._refuse("len()")

    def __contains__(self, item: object) -> bool:
        self._refuse("an `in` test")

    def __getitem__(self, key: Any) -> Any:
        self._refuse("indexing or slicing")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("a call")

    def __index__(self) -> int:
        self._refuse("an index")

    def __int__(self) -> int:
        self._refuse("int()")

    def __float__(self) -> float:
        self._refuse("float()")


def _refusing(symbol: str) -> Any:
    def method(self: Placeholder, *args: Any) -> Any:
        self._refuse(f"an expression ({symbol})")

    return method


# Arithmetic, bitwise and ordering operators, both ways round: `limit * 2`, `2 * limit`, `limit < 3`.
for _name, _symbol in {
    "add": "+", "sub": "-", "mul": "*", "matmul": "@", "truediv": "/", "floordiv": "//", "mod": "%",
    "pow": "**", "lshift": "<<", "rshift": ">>", "and": "&", "or": "|", "xor": "^",
}.items():  # fmt: skip
    setattr(Placeholder, f"__{_name}__", _refusing(_symbol))
    setattr(Placeholder, f"__r{_name}__", _refusing(_symbol))
for _name, _symbol in {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "neg": "-x", "pos": "+x", "abs": "abs()",
                       "invert": "~x", "round": "round()"}.items():  # fmt: skip
    setattr(Placeholder, f"__{_name}__", _refusing(_symbol))


def find_placeholders(value: Any) -> list[Placeholder]:
    """Every placeholder inside `value`: containers, dataclasses, objects' attributes (cycle-safe)."""
    found: list[Placeholder] = []
    seen: set[int] = set()

    def walk(v: Any, depth: int) -> None:
        if isinstance(v, Placeholder):
            found.append(v)
            return
        if depth > 50 or id(v) in seen or isinstance(v, str | bytes | int | float | complex | type(None)):
            return
        seen.add(id(v))
        if isinstance(v, dict):
            for key, item in v.items():
                walk(key, depth + 1)
                walk(item, depth + 1)
        elif isinstance(v, list | tuple | set | frozenset):
            for item in v:
                walk(item, depth + 1)
        else:
            state = getattr(v, "__dict__", None)
            if isinstance(state, dict) and not isinstance(v, type):
                walk(state, depth + 1)
            for slot in getattr(type(v), "__slots__", ()):
                if isinstance(slot, str) and hasattr(v, slot):
                    walk(getattr(v, slot), depth + 1)

    walk(value, 0)
    return found


def is_plain_structure(value: Any) -> bool:
    """Lists, tuples, sets and dicts down to leaves that are placeholders or hold none."""
    if isinstance(value, Placeholder):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return type(value) in (list, tuple, set, frozenset) and all(is_plain_structure(v) for v in value)
    if isinstance(value, dict):
        return type(value) is dict and all(is_plain_structure(v) for v in value.values())
    return not find_placeholders(value)
