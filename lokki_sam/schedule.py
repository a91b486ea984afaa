"""EventBridge schedule expressions, checked when a flow is defined rather than when it is deployed.

The template gives `@flow(schedule=...)` to an EventBridge rule (SAM's `Schedule` event), which
accepts two forms (EventBridge User Guide, "Rate expressions reference" and "Cron expressions
reference"):

- `rate(VALUE UNIT)`: VALUE a positive integer; UNIT minute, hour or day, singular when VALUE
  is 1 and plural otherwise (`rate(1 hour)`, `rate(5 hours)`).
- `cron(MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR)`: six fields, each a list (`,`) of
  values, ranges (`-`) and increments (`/`), or `*`; `?` only in day-of-month or day-of-week,
  and exactly one of those two must be `?`. Day-of-month also takes `L` and `W`
  (`L`, `15W`, `LW`); day-of-week `L` (`L`, `6L`) and `#` (`3#2`: the second Tuesday), with
  `#` the whole field.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from lokki_sam.errors import FlowDefinitionError

RATE_EXAMPLE = "rate(1 day) or rate(6 hours)"
CRON_EXAMPLE = "cron(0 6 * * ? *) (06:00 UTC every day) or cron(30 7 ? * MON-FRI *) (07:30 UTC on weekdays)"
RATE_UNITS = ("minute", "hour", "day")
# Units people reach for that EventBridge lacks, and the rate to write instead.
_OTHER_UNITS = {"second": "rate(1 minute) at most", "week": "rate(7 days)", "fortnight": "rate(14 days)"}

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class CronField(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names for low, low+1, ... (JAN = 1, SUN = 1)
    question: bool = False  # `?` allowed (the two day fields)


CRON_FIELDS = (
    CronField("minutes", 0, 59),
    CronField("hours", 0, 23),
    CronField("day-of-month", 1, 31, question=True),
    CronField("month", 1, 12, MONTHS),
    CronField("day-of-week", 1, 7, WEEKDAYS, question=True),
    CronField("year", 1970, 2199),
)

_EXPRESSION_RE = re.compile(r"^(rate|cron)\((.*)\)$", re.DOTALL)


def check_schedule(expression: object, *, where: str | None = None) -> str:
    """`expression` if EventBridge accepts it, else a FlowDefinitionError saying which part is wrong."""
    if not isinstance(expression, str):
        raise FlowDefinitionError(
            f"schedule must be a string, got {type(expression).__name__}",
            where=where,
            hint=f"e.g. {RATE_EXAMPLE}, or {CRON_EXAMPLE}",
        )
    match = _EXPRESSION_RE.match(expression)
    if match is None:
        raise FlowDefinitionError(
            f"schedule {expression!r} is not an EventBridge expression: write rate(...) or cron(...)",
            where=where,
            hint=f"e.g. {RATE_EXAMPLE}, or {CRON_EXAMPLE}",
        )
    kind, body = match.groups()
    reason = _rate_problem(body) if kind == "rate" else _cron_problem(body)
    if reason is not None:
        example = RATE_EXAMPLE if kind == "rate" else CRON_EXAMPLE
        raise FlowDefinitionError(f"schedule {expression!r}: {reason}", where=where, hint=f"e.g. {example}")
    return expression


def _fields(body: str) -> list[str] | None:
    """The space-separated fields of an expression's body, or None if its spacing is off."""
    if body != body.strip() or not body:
        return None
    return body.split()


def _rate_problem(body: str) -> str | None:
    parts = _fields(body)
    if parts is None or len(parts) != 2:
        return "a rate has two fields, a value and a unit, separated by a space: rate(VALUE UNIT)"
    value, unit = parts
    if not value.isdigit() or not value.isascii():
        return f"the value {value!r} must be a positive whole number"
    count = int(value)
    if count == 0:
        return "the value must be at least 1"
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in RATE_UNITS:
        instead = _OTHER_UNITS.get(singular.lower())
        return f"the unit {unit!r} is not one of minute(s), hour(s), day(s)" + (f": use {instead}" if instead else "")
    wanted = singular if count == 1 else f"{singular}s"
    if unit != wanted:
        number = "singular" if count == 1 else "plural"
        return f"with the value {count} the unit is {number}: rate({count} {wanted})"
    return None


def _cron_problem(body: str) -> str | None:
    parts = _fields(body)
    if parts is None or len(parts) != 6:
        found = "" if parts is None else f", found {len(parts)}"
        return (
            "a cron expression has six fields separated by spaces: "
            f"minutes hours day-of-month month day-of-week year{found}"
        )
    for spec, text in zip(CRON_FIELDS, parts, strict=True):
        problem = _field_problem(spec, text)
        if problem is not None:
            return f"{spec.name} field {text!r}: {problem}"
    day_of_month, day_of_week = parts[2], parts[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        both = "both are '?'" if day_of_month == "?" else "neither is '?'"
        return (
            f"exactly one of day-of-month and day-of-week must be '?' ({both}): "
            "give the days in one field and '?' in the other"
        )
    return None


def _field_problem(spec: CronField, text: str) -> str | None:
    if text == "?":
        return None if spec.question else "'?' is allowed only in day-of-month and day-of-week"
    if spec.name == "day-of-week" and "#" in text:
        return _nth_weekday_problem(spec, text)
    for element in text.split(","):
        problem = _element_problem(spec, element)
        if problem is not None:
            return problem
    return None


def _nth_weekday_problem(spec: CronField, text: str) -> str | None:
    """`3#2` (the second Tuesday of the month); a field with `#` holds only that expression."""
    day, _, nth = text.partition("#")
    if "," in text or not nth.isdigit() or not 1 <= int(nth) <= 5:
        return "'#' takes one weekday and its week of the month, e.g. 3#2 (the second Tuesday), alone in the field"
    return _value_problem(spec, day)


def _element_problem(spec: CronField, element: str) -> str | None:
    if not element:
        return "an empty value (two commas in a row, or a trailing comma)"
    if element == "?":
        return "'?' stands for the whole field, not one value in a list"
    base, slash, step = element.partition("/")
    if slash:
        if not step.isdigit() or int(step) < 1:
            return f"the increment in {element!r} must be a positive whole number"
        if spec.name == "day-of-week" and "L" in base.upper():
            return f"{element!r}: 'L' takes no increment"
    if base == "*":
        return None
    upper = base.upper()
    if spec.name == "day-of-month" and not slash and upper in ("L", "LW"):
        return None
    if spec.name == "day-of-month" and not slash and upper.endswith("W"):
        return _value_problem(spec, base[:-1], what="'W' (the nearest weekday) needs a day, e.g. 15W")
    if spec.name == "day-of-week" and not slash and upper.endswith("L"):
        return None if upper == "L" else _value_problem(spec, base[:-1])
    low, dash, high = base.partition("-")
    if dash:
        return _value_problem(spec, low) or _value_problem(spec, high)
    return _value_problem(spec, base)


def _value_problem(spec: CronField, value: str, *, what: str | None = None) -> str | None:
    if value.isdigit() and value.isascii():
        if spec.low <= int(value) <= spec.high:
            return None
        return f"{value} is outside {spec.low}-{spec.high}"
    if spec.names and value.upper() in spec.names:
        return None
    if what is not None:
        return what
    allowed = f"{spec.low}-{spec.high}" + (f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else "")
    return f"{value!r} is not a value of this field ({allowed}, with , - * /)"
