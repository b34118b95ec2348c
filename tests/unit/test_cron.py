"""Cron syntax and semantics: what crontab(5) says, not what APScheduler's from_crontab does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskmgr.core.cron import MACROS, parse_cron
from taskmgr.core.triggers import Cron, parse_trigger
from taskmgr.exceptions import InvalidCronError

START = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(expression: str, n: int, after: datetime = START) -> list[datetime]:
    return Cron(expression).next_fire_times(after, n)


def weekdays(expression: str, n: int) -> set[int]:
    """ISO weekdays (Monday = 1, Sunday = 7) of the next ``n`` fires."""
    return {fire.isoweekday() for fire in fires(expression, n)}


# -- semantics -----------------------------------------------------------------


def test_monday_is_1() -> None:
    result = fires("0 9 * * 1", 5)
    assert result == [utc(2026, 1, 5, 9) + timedelta(weeks=k) for k in range(5)]
    assert {fire.isoweekday() for fire in result} == {1}


@pytest.mark.parametrize("expression", ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * sun"])
def test_sunday_is_0_and_7(expression: str) -> None:
    result = fires(expression, 4)
    assert result[0] == utc(2026, 1, 4)
    assert {fire.isoweekday() for fire in result} == {7}


@pytest.mark.parametrize(
    "expression", ["0 0 * * SUN-SAT", "0 0 * * 0-6", "0 0 * * 0-7", "0 0 * * *"]
)
def test_every_day(expression: str) -> None:
    assert fires(expression, 14) == [utc(2026, 1, 2) + timedelta(days=k) for k in range(14)]


@pytest.mark.parametrize("expression", ["0 0 * * 1-5", "0 0 * * MON-FRI", "0 0 * * mon-fri"])
def test_monday_to_friday(expression: str) -> None:
    # APScheduler's from_crontab reads 1-5 as Tuesday-Saturday.
    assert weekdays(expression, 20) == {1, 2, 3, 4, 5}
    assert fires(expression, 3) == [utc(2026, 1, 2), utc(2026, 1, 5), utc(2026, 1, 6)]


def test_weekend_range_with_7() -> None:
    assert weekdays("0 0 * * 6-7", 10) == {6, 7}
    assert weekdays("0 0 * * FRI-7", 10) == {5, 6, 7}


def test_weekday_step() -> None:
    assert weekdays("0 0 * * */2", 20) == {7, 2, 4, 6}  # 0, 2, 4, 6: Sun, Tue, Thu, Sat
    assert weekdays("0 0 * * 1-5/2", 20) == {1, 3, 5}


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    result = fires("0 0 1 * MON", 7)
    assert result == [
        utc(2026, 1, 5),
        utc(2026, 1, 12),
        utc(2026, 1, 19),
        utc(2026, 1, 26),
        utc(2026, 2, 1),  # a Sunday: fires because it is the 1st
        utc(2026, 2, 2),
        utc(2026, 2, 9),
    ]


def test_day_of_month_and_day_of_week_when_one_starts_with_star() -> None:
    # crontab(5): a field starting with '*' is not restricted, so the fields AND.
    result = fires("0 0 */2 * MON", 4)  # odd days that are Mondays
    assert all(fire.isoweekday() == 1 and fire.day % 2 == 1 for fire in result)
    assert result[0] == utc(2026, 1, 5)
    assert fires("0 0 13 * *", 2) == [utc(2026, 1, 13), utc(2026, 2, 13)]


def test_or_with_an_impossible_day_of_month_still_fires_on_the_weekday() -> None:
    assert fires("0 0 31 2 MON", 2) == [utc(2026, 2, 2), utc(2026, 2, 9)]


@pytest.mark.parametrize(
    ("expression", "first"),
    [
        # A step larger than its range selects the range's first value (crontab(5)).
        ("55-56/2 * * * *", [utc(2026, 1, 1, 0, 55), utc(2026, 1, 1, 1, 55)]),
        ("0 12-23/12 * * *", [utc(2026, 1, 1, 12), utc(2026, 1, 2, 12)]),
        ("0 0 18-23/6 * *", [utc(2026, 1, 18), utc(2026, 2, 18), utc(2026, 3, 18)]),
        ("0 0 * * 0-6/7", [utc(2026, 1, 4), utc(2026, 1, 11)]),  # Sundays
        ("0 0 * * 6-7/7", [utc(2026, 1, 3), utc(2026, 1, 10)]),  # Saturdays only
        # A step as large as the field: the first value, once per hour, day, ...
        ("*/60 * * * *", [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]),
        ("0 */24 * * *", [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("0 0 1 */12 *", [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("0 0 * * */7", [utc(2026, 1, 4), utc(2026, 1, 11)]),
    ],
)
def test_step_larger_than_its_range(expression: str, first: list[datetime]) -> None:
    assert fires(expression, len(first)) == first


def test_every_15_minutes() -> None:
    assert fires("*/15 * * * *", 5) == [START + timedelta(minutes=15 * k) for k in range(1, 6)]


def test_ranges_steps_and_lists() -> None:
    assert fires("0-30/10 9 * * *", 4) == [
        utc(2026, 1, 1, 9, 0),
        utc(2026, 1, 1, 9, 10),
        utc(2026, 1, 1, 9, 20),
        utc(2026, 1, 1, 9, 30),
    ]
    assert fires("5,10 1,2 * * *", 4) == [
        utc(2026, 1, 1, 1, 5),
        utc(2026, 1, 1, 1, 10),
        utc(2026, 1, 1, 2, 5),
        utc(2026, 1, 1, 2, 10),
    ]
    assert fires("0 0 1 JAN-MAR/2,dec *", 3) == [utc(2026, 3, 1), utc(2026, 12, 1), utc(2027, 1, 1)]


def test_leap_day_fires_on_leap_years() -> None:
    assert fires("0 0 29 2 *", 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


@pytest.mark.parametrize(
    ("macro", "first"),
    [
        ("@hourly", utc(2026, 1, 1, 1)),
        ("@daily", utc(2026, 1, 2)),
        ("@midnight", utc(2026, 1, 2)),
        ("@weekly", utc(2026, 1, 4)),
        ("@monthly", utc(2026, 2, 1)),
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
        ("@DAILY", utc(2026, 1, 2)),
    ],
)
def test_macros(macro: str, first: datetime) -> None:
    assert fires(macro, 1) == [first]
    assert fires(macro, 3) == fires(MACROS[macro.lower()], 3)
    assert Cron(macro).expression == macro.lower()


def test_strictly_after_and_utc() -> None:
    result = fires("0 * * * *", 3, after=utc(2026, 1, 1, 5))
    assert result == [utc(2026, 1, 1, 6), utc(2026, 1, 1, 7), utc(2026, 1, 1, 8)]
    assert all(fire.tzinfo is UTC for fire in result)
    # Microseconds past a slot still skip it.
    assert fires("0 * * * *", 1, after=utc(2026, 1, 1, 5) + timedelta(microseconds=1)) == [
        utc(2026, 1, 1, 6)
    ]
    # An `after` in another zone means the same instant.
    berlin = datetime(2026, 1, 1, 6, tzinfo=ZoneInfo("Europe/Berlin"))  # 05:00Z
    assert fires("0 * * * *", 1, after=berlin) == [utc(2026, 1, 1, 6)]


def test_zero_or_negative_n() -> None:
    assert fires("* * * * *", 0) == []
    assert fires("* * * * *", -1) == []


def test_whitespace_is_normalised() -> None:
    assert Cron("  0\t9  * *\t1 ").expression == "0 9 * * 1"
    assert Cron("0\t9 * * 1") == Cron("0 9 * * 1")


def test_parse_reports_fixed_time_and_restriction() -> None:
    assert parse_cron("30 2 * * *").fixed_time
    assert parse_cron("0-59 0-23 * * *").fixed_time  # no '*': the literal G5 rule
    assert not parse_cron("*/15 2 * * *").fixed_time
    assert not parse_cron("30 */2 * * *").fixed_time
    assert not parse_cron("@hourly").fixed_time
    assert parse_cron("@daily").fixed_time
    parsed = parse_cron("0 0 */2 * MON")
    assert (parsed.dom_restricted, parsed.dow_restricted) == (False, True)
    assert parse_cron("0 0 * * 7").days_of_week == frozenset({0})


# -- refusals --------------------------------------------------------------------

BAD = [
    # (expression, field, words the message must contain)
    ("61 * * * *", "cron.minute", "value 61 out of range 0-59 in '61 * * * *'"),
    ("0 24 * * *", "cron.hour", "value 24 out of range 0-23"),
    ("0 0 0 * *", "cron.day_of_month", "value 0 out of range 1-31"),
    ("0 0 32 * *", "cron.day_of_month", "out of range 1-31"),
    ("0 0 * 13 *", "cron.month", "value 13 out of range 1-12"),
    ("0 0 * 0 *", "cron.month", "out of range 1-12"),
    ("0 0 * * 8", "cron.day_of_week", "value 8 out of range 0-7"),
    ("60-70 * * * *", "cron.minute", "out of range 0-59"),
    ("-1 * * * *", "cron.minute", "malformed range"),
    ("* * * *", "cron", "expected 5 fields"),
    ("0 0 * * * *", "cron", "6- and 7-field forms"),
    ("0 0 0 * * * 2026", "cron", "6- and 7-field forms"),
    ("", "cron", "expected 5 fields"),
    ("   ", "cron", "expected 5 fields"),
    ("* * * * *\n* * * * *", "cron", "control character"),
    ("* * * * *\x00", "cron", "control character"),
    ("*/0 * * * *", "cron.minute", "step 0"),
    ("0 0 1-31/0 * *", "cron.day_of_month", "step 0"),
    ("*/61 * * * *", "cron.minute", "step 61 in '*/61' out of range 1-60"),
    ("*/90 * * * *", "cron.minute", "do not carry over from one hour to the next"),
    ("0-5/61 * * * *", "cron.minute", "step 61 in '0-5/61' out of range 1-60"),
    ("0 */25 * * *", "cron.hour", "out of range 1-24"),
    ("0 0 */32 * *", "cron.day_of_month", "out of range 1-31"),
    ("0 0 * */13 *", "cron.month", "out of range 1-12"),
    ("0 0 * * */8", "cron.day_of_week", "step 8 in '*/8' out of range 1-7"),
    ("0 0 * * 0-7/8", "cron.day_of_week", "one week to the next"),
    ("*/ * * * *", "cron.minute", "step"),
    ("*/x * * * *", "cron.minute", "step"),
    ("5/15 * * * *", "cron.minute", "'5-59/15'"),
    ("5-1 * * * *", "cron.minute", "reversed range '5-1'"),
    ("0 0 * * FRI-MON", "cron.day_of_week", "reversed range"),
    ("0 0 * DEC-JAN *", "cron.month", "reversed range"),
    ("1- * * * *", "cron.minute", "malformed range '1-'"),
    ("1-2-3 * * * *", "cron.minute", "malformed item"),
    (",1 * * * *", "cron.minute", "empty list item"),
    ("1, * * * *", "cron.minute", "empty list item"),
    ("1,,2 * * * *", "cron.minute", "empty list item"),
    ("5abc * * * *", "cron.minute", "malformed item '5abc'"),
    ("** * * * *", "cron.minute", "malformed item"),
    ("abc * * * *", "cron.minute", "allowed: 0-59"),
    ("0 0 * * MONxyz", "cron.day_of_week", "allowed: 0-7 or SUN-SAT"),
    ("0 0 * FOO *", "cron.month", "allowed: 1-12 or JAN-DEC"),
    ("0 0 * * JAN", "cron.day_of_week", "'JAN' is not a value"),
    ("\uff15 * * * *", "cron", "non-ASCII character"),  # full-width 5
    ("0 0 * * MON\u00a0", "cron", "non-ASCII"),  # no-break space
    ("x" * 257, "cron", "at most 256"),
    (",".join(["1"] * 61) + " * * * *", "cron.minute", "at most 60"),
    ("0 0 L * *", "cron.day_of_month", "'L' (last)"),
    ("0 0 LW * *", "cron.day_of_month", "not supported"),
    ("0 0 15W * *", "cron.day_of_month", "not supported"),
    ("0 0 * * 5L", "cron.day_of_week", "not supported"),
    ("0 0 * * FRIL", "cron.day_of_week", "not supported"),
    ("0 0 * * MON#2", "cron", "'#' (nth weekday) is not supported"),
    ("0 0 * * MON#6", "cron", "not supported"),
    ("0 0 ? * MON", "cron", "'?' (no specific value) is not supported"),
    ("@reboot", "cron", "not a schedule"),
    ("@every 5m", "cron", "unknown macro"),
    ("@daily 1", "cron", "unknown macro"),
    ("0 0 30 2 *", "cron", "never fires"),
    ("0 0 31 4 *", "cron", "never fires"),
    ("0 0 31 2,4,6,9,11 *", "cron", "never fires"),
    ("0 0 30-31 FEB *", "cron", "never fires"),
]


@pytest.mark.parametrize(("expression", "field", "words"), BAD)
def test_refused_by_constructor(expression: str, field: str, words: str) -> None:
    with pytest.raises(InvalidCronError) as info:
        Cron(expression)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("expression", "field", "words"), BAD)
def test_refused_by_parse_trigger(expression: str, field: str, words: str) -> None:
    with pytest.raises(InvalidCronError) as info:
        parse_trigger({"type": "cron", "expression": expression})
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 29 2 *",  # leap years only
        "0 0 31 * *",
        "0 0 30 1,2 *",
        "0 0 31 2 MON",  # OR: the Mondays of February
        "59 23 31 12 *",
        "0-59 0-23 1-31 1-12 0-7",
        "*/59 */23 */30 */11 */6",
        "*/60 */24 */31 */12 */7",
        "55-56/2 12-23/12 18-23/6 1-2/12 0-6/7",
        "0 0 * * 7-7",
        "5-5/1 * * * *",
        "0 0 1 jan,JUL,Dec *",
        "0 0 * * Wed,sat",
        ",".join(str(m) for m in range(60)) + " * * * *",
    ],
)
def test_accepted(expression: str) -> None:
    spec = Cron(expression)
    assert spec.next_fire_times(START, 3)


@pytest.mark.parametrize("value", [5, None, b"* * * * *", ["* * * * *"]])
def test_non_string_expression(value: object) -> None:
    with pytest.raises(InvalidCronError, match="must be a string"):
        parse_trigger({"type": "cron", "expression": value})
    with pytest.raises(InvalidCronError, match="must be a string"):
        parse_cron(value)
