"""Schedule expressions are checked when the flow is defined, with EventBridge's rules and the reason."""

from __future__ import annotations

import pytest

from lokki_sam import flow, step
from lokki_sam.errors import FlowDefinitionError
from lokki_sam.schedule import check_schedule


@step
def tick() -> int:
    return 1


VALID = [
    "rate(1 minute)",
    "rate(5 minutes)",
    "rate(1 hour)",
    "rate(12 hours)",
    "rate(1 day)",
    "rate(30 days)",
    "cron(0 6 * * ? *)",
    "cron(15 10 ? * 6L 2025-2030)",
    "cron(0/15 8-17 ? * MON-FRI *)",
    "cron(0 9 L * ? *)",
    "cron(0 9 LW * ? *)",
    "cron(0 9 15W * ? *)",
    "cron(0 9 ? * 3#2 *)",
    "cron(0 0 1 1 ? *)",
    "cron(5,35 14 * JAN,JUL ? *)",
    "cron(0 18 ? * sun *)",
    "cron(0 */2 1-15 * ? 2199)",
]


@pytest.mark.parametrize("expression", VALID)
def test_expressions_eventbridge_accepts_pass_unchanged(expression: str) -> None:
    assert check_schedule(expression) == expression

    @flow(schedule=expression)
    def scheduled():
        return tick()

    assert scheduled.graph.schedule == expression


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        # the four
        ("rate(1 week)", r"the unit 'week' is not one of minute\(s\), hour\(s\), day\(s\): use rate\(7 days\)"),
        ("rate(-1 hour)", r"the value '-1' must be a positive whole number"),
        ("rate(3 fortnights)", r"the unit 'fortnights' is not one of .*: use rate\(14 days\)"),
        ("cron(too many fields here)", r"six fields separated by spaces: minutes hours .* year, found 4"),
        # rate
        ("rate(1 hours)", r"with the value 1 the unit is singular: rate\(1 hour\)"),
        ("rate(5 hour)", r"with the value 5 the unit is plural: rate\(5 hours\)"),
        ("rate(0 minutes)", r"the value must be at least 1"),
        ("rate(1.5 hours)", r"the value '1.5' must be a positive whole number"),
        ("rate(30 seconds)", r"the unit 'seconds' is not one of .*rate\(1 minute\) at most"),
        ("rate(1day)", r"a rate has two fields, a value and a unit"),
        ("rate(5 Minutes)", r"the unit 'Minutes' is not one of"),
        # cron: the ? rule
        ("cron(0 6 * * * *)", r"exactly one of day-of-month and day-of-week must be '\?' \(neither is '\?'\)"),
        ("cron(0 6 ? * ? *)", r"exactly one of day-of-month and day-of-week must be '\?' \(both are '\?'\)"),
        ("cron(0 6 1 * MON *)", r"\(neither is '\?'\)"),
        ("cron(0 6 * * ? *  )", r"six fields"),
        ("cron(0 6 * * ?)", r"six fields .*found 5"),
        # cron: values and characters per field
        ("cron(60 6 * * ? *)", r"minutes field '60': 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", r"hours field '24': 24 is outside 0-23"),
        ("cron(0 6 32 * ? *)", r"day-of-month field '32': 32 is outside 1-31"),
        ("cron(0 6 * 13 ? *)", r"month field '13': 13 is outside 1-12"),
        ("cron(0 6 ? * 8 *)", r"day-of-week field '8': 8 is outside 1-7"),
        ("cron(0 6 * * ? 1969)", r"year field '1969': 1969 is outside 1970-2199"),
        ("cron(0 6 * JANUARY ? *)", r"month field 'JANUARY': 'JANUARY' is not a value of this field \(1-12 or JAN-DEC"),
        ("cron(? 6 * * ? *)", r"minutes field '\?': '\?' is allowed only in day-of-month and day-of-week"),
        ("cron(0 6 W * ? *)", r"day-of-month field 'W': 'W' \(the nearest weekday\) needs a day"),
        ("cron(0 6 ? * 3#2,5#1 *)", r"'#' takes one weekday and its week of the month, e.g. 3#2"),
        ("cron(0 6 ? * 3#6 *)", r"'#' takes one weekday"),
        ("cron(0/0 6 * * ? *)", r"the increment in '0/0' must be a positive whole number"),
        ("cron(0,,5 6 * * ? *)", r"an empty value"),
        ("cron(0 6 1,? * ? *)", r"'\?' stands for the whole field"),
        # neither form
        ("every day", r"is not an EventBridge expression: write rate\(\.\.\.\) or cron\(\.\.\.\)"),
        ("at(2025-01-01T00:00:00)", r"is not an EventBridge expression"),
    ],
)
def test_invalid_expressions_are_refused_at_definition_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(FlowDefinitionError, match=rf"(?s)flow 'nightly': schedule .*{reason}.*hint: e\.g\. "):

        @flow(schedule=expression)
        def nightly():
            return tick()


def test_the_hint_shows_a_correct_example_of_the_same_form() -> None:
    with pytest.raises(FlowDefinitionError) as rate:
        check_schedule("rate(1 week)")
    assert rate.value.hint is not None and "rate(1 day)" in rate.value.hint and "cron(" not in rate.value.hint
    with pytest.raises(FlowDefinitionError) as cron:
        check_schedule("cron(0 6 * * * *)")
    assert cron.value.hint is not None and "cron(0 6 * * ? *)" in cron.value.hint
    for example in rate.value.hint.removeprefix("e.g. ").split(" or "):
        check_schedule(example)  # the examples themselves are valid


def test_a_schedule_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="schedule must be a string, got int"):

        @flow(schedule=5)  # type: ignore[arg-type]
        def numeric():
            return tick()
