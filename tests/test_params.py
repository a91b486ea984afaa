"""Flow parameters: coercion from CLI strings and JSON values, defaults, and clear errors."""

from __future__ import annotations

import datetime as dt
import enum
import json
from decimal import Decimal
from typing import Any, Literal

import pytest

from lokki_sam.errors import ParamError
from lokki_sam.params import (
    MISSING,
    Param,
    coerce,
    from_record,
    params_from_signature,
    parse_assignments,
    resolve_params,
    to_record,
)


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@pytest.mark.parametrize(
    ("text", "tp", "expected"),
    [
        ("3", int, 3),
        (" -7 ", int, -7),
        ("2.5", float, 2.5),
        ("4", float, 4.0),
        ("true", bool, True),
        ("No", bool, False),
        ("on", bool, True),
        ("a,b, c", list[str], ["a", "b", "c"]),
        ('["a", "b,c"]', list[str], ["a", "b,c"]),
        ("1,2,3", list[int], [1, 2, 3]),
        ("", list[str], []),
        ('{"a": 1}', dict, {"a": 1}),
        ('{"a": "1.5"}', dict[str, float], {"a": 1.5}),
        ("none", int | None, None),
        ("null", int | None, None),
        ("5", int | None, 5),
        ("x", str | None, "x"),
        ("1,2", tuple[int, int], (1, 2)),
        ("b,a,b", set[str], {"a", "b"}),
        ("fast", Literal["fast", "slow"], "fast"),
        ("2", Literal[1, 2], 2),
        ("anything", None, "anything"),
        ("2026-01-31", dt.date, dt.date(2026, 1, 31)),
        ("2026-01-31T09:30:00+00:00", dt.datetime, dt.datetime(2026, 1, 31, 9, 30, tzinfo=dt.UTC)),
        ("2026-01-31", dt.datetime, dt.datetime(2026, 1, 31)),
        ("09:30", dt.time, dt.time(9, 30)),
        ("2026-01-31", dt.date | None, dt.date(2026, 1, 31)),
        ("2026-01-31,2026-02-01", list[dt.date], [dt.date(2026, 1, 31), dt.date(2026, 2, 1)]),
        ("slow", Mode, Mode.SLOW),
        ("SLOW", Mode, Mode.SLOW),
        ("2", Level, Level.HIGH),
        ("LOW", Level, Level.LOW),
        ("fast,slow", list[Mode], [Mode.FAST, Mode.SLOW]),
        ("2.50", Decimal, Decimal("2.50")),
    ],
)
def test_coerce_from_cli_text(text: str, tp: Any, expected: Any) -> None:
    value = coerce(text, tp)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        (3, int, 3),
        (3.0, int, 3),
        (3, float, 3.0),
        (False, bool, False),
        ([1, "2"], list[int], [1, 2]),
        ({"a": 1}, dict[str, int], {"a": 1}),
        (None, int | None, None),
    ],
)
def test_coerce_from_json_values(value: Any, tp: Any, expected: Any) -> None:
    assert coerce(value, tp) == expected


@pytest.mark.parametrize(
    ("value", "tp"),
    [
        ("x", int),
        ("1.5", int),
        (True, int),
        (2.5, int),
        ("maybe", bool),
        (1, bool),
        ("abc", float),
        (True, float),
        (5, str),
        ('{"a": 1', dict),
        ("[1]", dict),
        (5, list[int]),
        ("1,2,3", tuple[int, int]),
        ("medium", Literal["fast", "slow"]),
        ("x", int | None),
        ("2026-13-01", dt.date),
        ("31.1.2026", dt.date),
        ("2026-01-31T09:30", dt.date),  # a datetime's text: its time is never dropped silently
        (20260131, dt.date),
        ("25:00", dt.time),
        ("medium", Mode),
        ("3", Level),
        ("abc", Decimal),  # Decimal's own InvalidOperation: a clear error, never a traceback
    ],
)
def test_coerce_rejects(value: Any, tp: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        coerce(value, tp)


def flow_params(limit: int, names: list[str] | None = None, ratio: float = 0.5, verbose: bool = False) -> None: ...


def test_params_from_signature() -> None:
    params = params_from_signature(flow_params)
    assert [p.name for p in params] == ["limit", "names", "ratio", "verbose"]
    assert params[0].required and params[0].default is MISSING
    assert params[1].type_name == "list[str] | None"
    assert params[2].default == 0.5 and not params[2].required


def test_resolve_applies_defaults_and_coerces() -> None:
    params = params_from_signature(flow_params)
    resolved = resolve_params(params, {"limit": "7", "names": "a,b", "verbose": "yes"}, where="flow 'f'")
    assert resolved == {"limit": 7, "names": ["a", "b"], "ratio": 0.5, "verbose": True}
    assert resolve_params(params, {"limit": 1}, where="flow 'f'") == {
        "limit": 1,
        "names": None,
        "ratio": 0.5,
        "verbose": False,
    }


def test_unannotated_param_takes_its_default_type() -> None:
    p = Param("n", None, 10)
    assert p.coerce("12", where="x") == 12
    assert Param("anything").coerce("raw", where="x") == "raw"


def test_unknown_param_error_lists_accepted_names() -> None:
    params = params_from_signature(flow_params)
    with pytest.raises(ParamError, match=r"'f': unknown parameter\(s\) limt[\s\S]*this flow accepts: limit, names"):
        resolve_params(params, {"limt": "1"}, where="flow 'f'")


def test_missing_param_error() -> None:
    params = params_from_signature(flow_params)
    with pytest.raises(ParamError, match=r"missing required parameter 'limit' \(int\)[\s\S]*-p limit=<int>"):
        resolve_params(params, {}, where="flow 'f'")


def test_ill_typed_param_error() -> None:
    params = params_from_signature(flow_params)
    with pytest.raises(ParamError, match=r"parameter 'ratio' expects float, got 'lots'"):
        resolve_params(params, {"limit": 1, "ratio": "lots"}, where="flow 'f'")


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", 'cfg={"x": 1}', "e=", "s=a=b"], where="w") == {
        "a": "1",
        "cfg": '{"x": 1}',
        "e": "",
        "s": "a=b",
    }
    with pytest.raises(ParamError, match=r"bad parameter 'novalue'[\s\S]*-p name=value"):
        parse_assignments(["novalue"], where="w")
    with pytest.raises(ParamError, match=r"parameter 'a' given twice"):
        parse_assignments(["a=1", "a=2"], where="w")


def test_an_ill_formed_date_names_the_parameter_and_the_format() -> None:
    with pytest.raises(
        ParamError, match=r"parameter 'day' expects date, got '31/01/2026' \(not an ISO 8601 date \(like 2026-01-31\)\)"
    ):
        resolve_params((Param("day", dt.date),), {"day": "31/01/2026"}, where="flow 'f'")


def test_enum_parameters_are_recorded_and_resolved_back_to_the_members() -> None:
    params = (Param("mode", Mode), Param("levels", list[Level]))
    resolved = resolve_params(params, {"mode": "SLOW", "levels": "1,HIGH"}, where="flow 'f'")
    assert resolved == {"mode": Mode.SLOW, "levels": [Level.LOW, Level.HIGH]}
    record = to_record(resolved, where="flow 'f'")
    assert record == {"mode": {"$enum": "slow"}, "levels": [{"$enum": 1}, {"$enum": 2}]}
    again = resolve_params(params, from_record(record), where="run r")
    assert again == resolved and type(again["mode"]) is Mode and type(again["levels"][1]) is Level


@pytest.mark.parametrize(
    ("tp", "text", "said"),
    [
        (dt.date, "2026-11-31", "day 31 is out of range: November 2026 has 30 days"),
        (dt.date, "2025-02-29", "day 29 is out of range: February 2025 has 28 days"),
        (dt.date, "2026-13-01", "month 13 is out of range: months are 01 to 12"),
        (dt.date, "0000-01-01", "year 0000 is out of range: years are 0001 to 9999"),
        (dt.datetime, "2026-04-31T09:00", "day 31 is out of range: April 2026 has 30 days"),
        (dt.date | None, "2026-06-31", "day 31 is out of range: June 2026 has 30 days"),
        (dt.time, "25:00", "out of range: hour must be in 0..23"),
        (dt.time, "9h30", "not an ISO 8601 time (like 09:30:00)"),
    ],
)
def test_a_date_or_time_out_of_range_says_which_field(tp: Any, text: str, said: str) -> None:
    with pytest.raises(ParamError) as caught:
        resolve_params((Param("day", tp),), {"day": text}, where="flow 'f'")
    assert f"got {text!r} ({said})" in caught.value.message
    assert "not an ISO" not in caught.value.message or "not an ISO" in said


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"limt": 1}, "unknown parameter(s) limt (did you mean limit?)"),
        ({"Ratio": 1}, "unknown parameter(s) Ratio (did you mean ratio?)"),
        ({"zzz": 1, "verbos": 1}, "unknown parameter(s) verbos (did you mean verbose?), zzz"),
    ],
)
def test_an_unknown_parameter_suggests_the_closest_one(given: dict[str, Any], said: str) -> None:
    with pytest.raises(ParamError) as caught:
        resolve_params(params_from_signature(flow_params), {"limit": 1, **given}, where="flow 'f'")
    assert caught.value.message == said
    assert caught.value.hint == "this flow accepts: limit, names, ratio, verbose"


@pytest.mark.parametrize("value", [dt.time(9, 30), dt.time(23, 59, 59, 999), dt.time(7, tzinfo=dt.UTC)])
def test_time_parameters_are_recorded_exactly(value: dt.time) -> None:
    record = to_record({"at": value, "ats": [value]}, where="flow 'f'")
    assert json.loads(json.dumps(record)) == record
    assert from_record(record) == {"at": value, "ats": [value]}
