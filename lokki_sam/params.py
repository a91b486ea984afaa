"""Flow parameters: declared by the flow function's signature, coerced from CLI text or JSON.

The same rules serve `lokki-sam run -p`, `lokki-sam invoke -p`, the execution input of a
Step Functions run and the defaults of a scheduled run, so a value means the same everywhere.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lokki_sam.errors import ParamError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Param:
    """One flow parameter: name, annotation (may be None) and default (MISSING if required)."""

    name: str
    annotation: Any = None
    default: Any = MISSING

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def type_name(self) -> str:
        return type_name(self.effective_type)

    @property
    def effective_type(self) -> Any:
        if self.annotation is not None:
            return self.annotation
        if self.default is not MISSING and self.default is not None:
            return type(self.default)
        return None

    def coerce(self, value: Any, *, where: str) -> Any:
        """Convert a CLI string or a JSON value to this parameter's type."""
        try:
            return coerce(value, self.effective_type)
        except (ValueError, TypeError) as exc:
            raise ParamError(
                f"parameter '{self.name}' expects {self.type_name}, got {value!r} ({exc})",
                where=where,
                hint=f"pass -p {self.name}=<{self.type_name}>",
            ) from None


def params_from_signature(func: Any) -> tuple[Param, ...]:
    """Read a flow function's parameters; only plain keyword-capable parameters are allowed."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    result = []
    for p in inspect.signature(func).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ParamError(
                f"flow parameter '{p.name}' must be a plain named parameter",
                where=f"flow '{func.__name__}'",
                hint="declare it as `name: type = default`",
            )
        annotation = hints.get(p.name, None if p.annotation is p.empty else p.annotation)
        default = MISSING if p.default is p.empty else p.default
        result.append(Param(p.name, annotation, default))
    return tuple(result)


def resolve_params(params: tuple[Param, ...], given: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Validate and coerce given values, apply defaults, and refuse unknown or missing names."""
    known = {p.name: p for p in params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise ParamError(
            f"unknown parameter(s) {', '.join(did_you_mean(name, known) for name in unknown)}",
            where=where,
            hint=f"this flow accepts: {accepted}",
        )
    resolved: dict[str, Any] = {}
    for p in params:
        if p.name in given:
            resolved[p.name] = p.coerce(given[p.name], where=where)
        elif p.required:
            raise ParamError(
                f"missing required parameter '{p.name}' ({p.type_name})",
                where=where,
                hint=f"pass -p {p.name}=<{p.type_name}>",
            )
        else:
            resolved[p.name] = p.default
    return resolved


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`name`, with the closest of `choices` when one is close: `limt (did you mean limit?)`."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"{name} (did you mean {close[0]}?)" if close else name


def parse_assignments(pairs: tuple[str, ...] | list[str], *, where: str) -> dict[str, str]:
    """Split `-p name=value` options into a dict of raw strings."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"bad parameter {pair!r}", where=where, hint="write it as -p name=value")
        if name in result:
            raise ParamError(f"parameter '{name}' given twice", where=where)
        result[name] = value
    return result


def type_name(tp: Any) -> str:
    if tp is None:
        return "any"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any) -> Any:
    """Coerce `value` (a CLI string or a JSON-decoded value) to the type `tp`."""
    if tp is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or "no matching type")
    if origin is typing.Literal:
        for choice in args:
            try:
                candidate = coerce(value, type(choice))
            except (ValueError, TypeError):
                continue
            if candidate == choice:
                return choice
        raise ValueError(f"must be one of {', '.join(map(repr, args))}")
    if tp is bool:
        return _to_bool(value)
    if tp is int:
        return _to_int(value)
    if tp is float:
        return _to_float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError("not a string")
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        return _to_sequence(value, origin or tp, args)
    if origin is dict or tp is dict:
        return _to_dict(value, args)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if _is_iso_type(tp):
            return _from_iso(value, tp)
        if isinstance(tp, enum.EnumMeta):
            return _to_enum(value, tp)
        try:
            return tp(value)
        except (ValueError, TypeError):
            raise
        except Exception as exc:  # a constructor's own error (Decimal("abc"): InvalidOperation)
            raise ValueError(f"not a valid {tp.__name__}") from exc
    return value


def _to_enum(value: Any, tp: Any) -> Any:
    """A member by its value (`-p mode=fast`, or the value's text: `-p level=2`), else by its name."""
    for member in tp:
        if member.value == value or (isinstance(value, str) and str(member.value) == value):
            return member
    if isinstance(value, str) and value in tp.__members__:
        return tp[value]
    choices = ", ".join(repr(m.value) for m in tp)
    raise ValueError(f"must be one of {choices} (or a name: {', '.join(tp.__members__)})")


def _is_iso_type(tp: type) -> bool:
    import datetime as dt  # only flows with such parameters pay for the import

    return issubclass(tp, dt.date | dt.time)


def _from_iso(value: Any, tp: Any) -> Any:
    """A date, datetime or time from ISO 8601 text (`2026-01-31`, `2026-01-31T09:00:00+00:00`, `09:30`),
    as given to -p and as sent to the cloud."""
    import datetime as dt

    if not isinstance(value, str):
        raise TypeError(f"expected ISO 8601 text, got {type(value).__name__}")
    if tp is dt.date and "T" in value:  # a datetime's text is not a date: never drop its time silently
        raise ValueError("a date is YYYY-MM-DD (this has a time)")
    try:
        return tp.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(_iso_problem(value.strip(), tp, exc)) from None


def _iso_problem(text: str, tp: Any, exc: ValueError) -> str:
    """Why ISO text is refused: a field out of range (`2026-11-31`: November has 30 days), said as
    such, or text that is not ISO 8601 at all."""
    import calendar
    import datetime as dt
    import re

    found = re.match(r"(\d{4})-(\d{2})-(\d{2})", text) if tp is not dt.time else None
    if found:
        year, month, day = (int(part) for part in found.groups())
        if not dt.MINYEAR <= year <= dt.MAXYEAR:
            return f"year {found.group(1)} is out of range: years are {dt.MINYEAR:04d} to {dt.MAXYEAR}"
        if not 1 <= month <= 12:
            return f"month {found.group(2)} is out of range: months are 01 to 12"
        days = calendar.monthrange(year, month)[1]
        if not 1 <= day <= days:
            return f"day {found.group(3)} is out of range: {calendar.month_name[month]} {year} has {days} days"
    reason = str(exc)
    if reason and not reason.startswith("Invalid isoformat string"):  # Python's own range check
        return f"out of range: {reason}"
    example = {dt.datetime: "2026-01-31T09:00:00", dt.time: "09:30:00"}.get(tp, "2026-01-31")
    return f"not an ISO 8601 {tp.__name__} (like {example})"


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("not a boolean (use true/false)")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError("not an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise TypeError("not a number")


def _decode_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def _to_sequence(value: Any, container: Any, args: tuple[Any, ...]) -> Any:
    if isinstance(value, str):
        decoded = _decode_text(value)
        if isinstance(decoded, list):
            value = decoded
        elif value.strip().startswith(("[", "{")):  # meant as JSON: never split it on commas
            raise ValueError('not valid JSON (a list is written like ["a", "b"] or a,b)')
        else:  # comma-separated shorthand: -p names=a,b,c
            value = [part.strip() for part in value.split(",")] if value.strip() else []
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeError("not a list")
    if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} items")
        return tuple(coerce(v, a) for v, a in zip(value, args, strict=True))
    item_type = args[0] if args else None
    items = [coerce(v, item_type) for v in value]
    return items if container is list else container(items)


def _to_dict(value: Any, args: tuple[Any, ...]) -> dict[Any, Any]:
    if isinstance(value, str):
        decoded = _decode_text(value)
        if decoded is None and value.strip() not in ("null", ""):
            raise ValueError('not valid JSON (write it like {"a": 1})')
        value = decoded
    if not isinstance(value, dict):
        raise TypeError('not a JSON object (write it like {"a": 1})')
    if not args:
        return dict(value)
    key_type, value_type = args
    return {coerce(k, key_type): coerce(v, value_type) for k, v in value.items()}


def as_text(value: Any) -> str:
    """A parameter value as a user would type it: `2026-01-31` for a date, `fast` for an Enum
    member, repr() for everything else (strings quoted, so `'3'` and `3` stay apart)."""
    import datetime as dt

    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return repr(value)


# ------------------------------------------------------------------------------ run records


def to_record(params: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Resolved parameter values as JSON that `from_record` turns back into exactly the same
    values (run.json must always be valid JSON, and a resume must see the values the run saw).

    Values JSON cannot hold are tagged: {"$tuple": [...]}, {"$set": [...]}, {"$float": "nan"},
    {"$decimal": "1.10"}, {"$path": "..."}, {"$bytes": "<base64>"}, {"$datetime": "<iso>"}, {"$time": "<iso>"}, ...
    A value that cannot be recorded exactly is an error naming the parameter."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        try:
            encoded = _encode(value)
            exact = same_value(_decode(json.loads(json.dumps(encoded, allow_nan=False))), _plain(value))
        except (TypeError, ValueError):
            exact = False
        if not exact:
            raise ParamError(
                f"parameter '{name}' = {value!r} ({type(value).__name__}) cannot be recorded exactly in the run record",
                where=where,
                hint="use values of JSON types, tuples, sets, Decimal, Path, bytes, dates, times or Enum members",
            )
        out[name] = encoded
    return out


def _plain(value: Any) -> Any:
    """`value` as `from_record` gives it back: an Enum member as its value (resolving the
    parameters again turns it into the member of the declared type)."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, set | frozenset):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def same_value(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (nan equals nan: it round-trips)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _decode(value) for name, value in record.items()}


def _encode(value: Any) -> Any:
    import base64
    import datetime as dt
    import decimal
    import math
    import pathlib

    if isinstance(value, enum.Enum):  # before int and str: an IntEnum or StrEnum member is one
        return {"$enum": _encode(value.value)}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, set | frozenset):
        items = sorted((_encode(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return {"$frozenset" if isinstance(value, frozenset) else "$set": items}
    if isinstance(value, dict):
        plain = all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)).startswith("$"))
        if plain:
            return {k: _encode(v) for k, v in value.items()}
        return {"$dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, pathlib.PurePath):
        return {"$path": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    raise TypeError(f"no record encoding for {type(value).__name__}")


def _decode(value: Any) -> Any:
    import base64
    import datetime as dt
    import decimal
    import pathlib

    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        decoders: dict[str, Callable[[Any], Any]] = {
            "$float": float,
            "$tuple": lambda v: tuple(_decode(x) for x in v),
            "$set": lambda v: {_decode(x) for x in v},
            "$frozenset": lambda v: frozenset(_decode(x) for x in v),
            "$dict": lambda v: {_decode(k): _decode(x) for k, x in v},
            "$decimal": decimal.Decimal,
            "$path": pathlib.Path,
            "$bytes": base64.b64decode,
            "$datetime": dt.datetime.fromisoformat,
            "$date": dt.date.fromisoformat,
            "$time": dt.time.fromisoformat,
            "$enum": _decode,  # the member's value: resolving the parameters makes it the member
        }
        if tag in decoders:
            return decoders[tag](inner)
    return {k: _decode(v) for k, v in value.items()}
