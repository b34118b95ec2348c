"""Trigger specs: Interval and Date arithmetic, JSON round-trips, refusals from every entry."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest

from taskmgr.core import engine as _engine
from taskmgr.core.triggers import Cron, Date, Interval, TriggerSpec, parse_trigger
from taskmgr.exceptions import (
    InvalidCronError,
    InvalidDatetimeError,
    InvalidIntervalError,
    InvalidTimezoneError,
    InvalidTriggerError,
    TaskmgrError,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


# -- Interval ------------------------------------------------------------------


def test_interval_from_seconds_or_timedelta() -> None:
    assert Interval(10).every == timedelta(seconds=10)
    assert Interval(1.5).every == timedelta(seconds=1.5)
    assert Interval(timedelta(minutes=5)) == Interval(300)
    assert Interval(every=60).every == timedelta(minutes=1)


def test_interval_anchored_on_start() -> None:
    spec = Interval(timedelta(minutes=10), start=T0)
    assert spec.next_fire_times(T0 - timedelta(days=1), 2) == [T0, T0 + timedelta(minutes=10)]
    assert spec.next_fire_times(T0, 2) == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]
    assert spec.next_fire_times(T0 + timedelta(minutes=25), 3) == [
        T0 + timedelta(minutes=30),
        T0 + timedelta(minutes=40),
        T0 + timedelta(minutes=50),
    ]
    # Exactly on a slot: strictly after it.
    assert spec.next_fire_times(T0 + timedelta(minutes=30), 1) == [T0 + timedelta(minutes=40)]


def test_interval_without_start_counts_from_after() -> None:
    spec = Interval(90)
    after = T0 + timedelta(seconds=7, microseconds=3)
    assert spec.next_fire_times(after, 2) == [
        after + timedelta(seconds=90),
        after + timedelta(seconds=180),
    ]


def test_interval_ignores_dst() -> None:
    # Real elapsed time, not wall time: 24 h across Berlin's spring forward is 25:00 wall.
    start = datetime(2026, 3, 28, 12, tzinfo=BERLIN)
    spec = Interval(timedelta(hours=24), start=start)
    (fire,) = spec.next_fire_times(start, 1)
    assert fire == datetime(2026, 3, 29, 11, tzinfo=UTC)
    assert fire.astimezone(BERLIN).hour == 13


def test_interval_results_are_utc_and_increasing() -> None:
    spec = Interval(7, start=datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    assert spec.start == datetime(2025, 12, 31, 20, tzinfo=UTC)
    assert spec.start is not None
    assert spec.start.tzinfo is UTC
    result = spec.next_fire_times(datetime(2026, 1, 1, tzinfo=BERLIN), 50)
    assert all(fire.tzinfo is UTC for fire in result)
    assert all(b - a == timedelta(seconds=7) for a, b in pairwise(result))
    assert (result[0] - spec.start) % timedelta(seconds=7) == timedelta(0)


def test_interval_anchored() -> None:
    spec = Interval(60)
    anchored = spec.anchored(datetime(2026, 1, 1, 1, tzinfo=BERLIN))
    assert anchored.start == T0
    assert anchored.anchored(T0 + timedelta(days=1)) is anchored
    with pytest.raises(InvalidDatetimeError) as info:
        spec.anchored(datetime(2026, 1, 1))
    assert info.value.field == "interval.start"


def test_interval_stops_before_year_10000() -> None:
    spec = Interval(timedelta(days=366), start=datetime(9998, 6, 1, tzinfo=UTC))
    assert spec.next_fire_times(datetime(9998, 1, 1, tzinfo=UTC), 5) == [
        datetime(9998, 6, 1, tzinfo=UTC),
        datetime(9999, 6, 2, tzinfo=UTC),
    ]


# -- Date --------------------------------------------------------------------------


def test_date_fires_once() -> None:
    spec = Date(datetime(2026, 6, 1, 12, tzinfo=BERLIN))
    assert spec.at == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert spec.at.tzinfo is UTC
    assert spec.next_fire_times(T0, 5) == [spec.at]
    assert spec.next_fire_times(spec.at) == []
    assert spec.next_fire_times(spec.at - timedelta(microseconds=1)) == [spec.at]
    assert spec.next_fire_times(T0, 0) == []


# -- JSON round-trips ----------------------------------------------------------------

SPECS = [
    Cron("0 9 * * 1"),
    Cron("*/15 * * * *", timezone="America/New_York"),
    Cron("@daily", timezone="US/Eastern"),
    Interval(10),
    Interval(1.25),
    Interval(timedelta(days=366)),
    Interval(timedelta(hours=1), start=datetime(2026, 3, 29, 3, tzinfo=BERLIN)),
    Date(datetime(2026, 6, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_json_round_trip(spec: Cron | Interval | Date) -> None:
    data = spec.model_dump(mode="json")
    assert json.loads(json.dumps(data)) == data
    assert parse_trigger(data) == spec
    assert parse_trigger(json.loads(json.dumps(data))) == spec
    assert type(parse_trigger(data)) is type(spec)
    assert pydantic.TypeAdapter(TriggerSpec).validate_json(json.dumps(data)) == spec
    assert hash(parse_trigger(data)) == hash(spec)


def test_json_shapes() -> None:
    assert Cron("0 9 * * 1", timezone="Europe/Berlin").model_dump(mode="json") == {
        "type": "cron",
        "expression": "0 9 * * 1",
        "timezone": "Europe/Berlin",
    }
    assert Interval(10, start=T0).model_dump(mode="json") == {
        "type": "interval",
        "every": 10,
        "start": "2026-01-01T00:00:00Z",
    }
    assert Interval(1.5).model_dump(mode="json")["every"] == 1.5
    assert Interval(10).model_dump()["every"] == timedelta(seconds=10)
    assert Date(T0).model_dump(mode="json") == {"type": "date", "at": "2026-01-01T00:00:00Z"}


def test_parse_trigger_returns_specs_as_they_are() -> None:
    spec = Cron("0 0 * * *")
    assert parse_trigger(spec) is spec


def test_specs_are_frozen() -> None:
    spec = Cron("0 0 * * *")
    with pytest.raises(pydantic.ValidationError):
        spec.expression = "1 1 * * *"  # type: ignore[misc]


def test_spec_inside_another_model_fails_as_validation_error() -> None:
    class Holder(pydantic.BaseModel):
        trigger: TriggerSpec

    assert Holder(trigger={"type": "interval", "every": 5}).trigger == Interval(5)
    with pytest.raises(pydantic.ValidationError) as info:
        Holder(trigger={"type": "cron", "expression": "61 * * * *"})
    error = info.value.errors()[0]
    # pydantic runs the spec's own __init__ for nested input, so the loc stops at the
    # spec; the precise field travels in the wrapped error.
    assert error["loc"][:2] == ("trigger", "cron")
    assert isinstance(error["ctx"]["error"], InvalidCronError)
    assert error["ctx"]["error"].field == "cron.minute"


# -- refusals ----------------------------------------------------------------------

NAIVE = datetime(2026, 1, 1)

# (constructor call, JSON form or None, error class, field)
BAD: list[tuple[Callable[[], object], dict[str, Any] | None, type[TaskmgrError], str | None]] = [
    (
        lambda: Cron("61 * * * *"),
        {"type": "cron", "expression": "61 * * * *"},
        InvalidCronError,
        "cron.minute",
    ),
    (
        lambda: Cron("0 0 30 2 *"),
        {"type": "cron", "expression": "0 0 30 2 *"},
        InvalidCronError,
        "cron",
    ),
    *(
        (
            (lambda zone=zone: Cron("* * * * *", timezone=zone)),
            {"type": "cron", "expression": "* * * * *", "timezone": zone},
            InvalidTimezoneError,
            "timezone",
        )
        for zone in [
            "",
            "Mars/Olympus",
            "../../etc/passwd",
            "+02:00",
            "UTC ",
            "/etc/localtime",
            "UTC\x00",
            "Europe",
            5,
            None,
        ]
    ),
    *(
        (
            (lambda every=every: Interval(every)),
            {"type": "interval", "every": every},
            InvalidIntervalError,
            "interval",
        )
        for every in [
            0,
            -5,
            0.001,
            0.999,
            float("nan"),
            float("inf"),
            float("-inf"),
            1e308,
            10**400,
            "10",
            "PT10S",
            True,
            False,
            [10],
            366 * 86400 + 1,
        ]
    ),
    *(
        ((lambda every=every: Interval(every)), None, InvalidIntervalError, "interval")
        for every in [
            timedelta(0),
            timedelta(seconds=-5),
            timedelta(milliseconds=999),
            timedelta(days=367),
            timedelta.max,
        ]
    ),
    (
        lambda: Interval(5, start=NAIVE),
        {"type": "interval", "every": 5, "start": "2026-01-01T00:00:00"},
        InvalidDatetimeError,
        "interval.start",
    ),
    (
        lambda: Interval(5, start="soon"),
        {"type": "interval", "every": 5, "start": "soon"},
        InvalidDatetimeError,
        "interval.start",
    ),
    (lambda: Interval(5, start=date(2026, 1, 1)), None, InvalidDatetimeError, "interval.start"),
    (
        lambda: Date(NAIVE),
        {"type": "date", "at": "2026-03-29T02:30:00"},
        InvalidDatetimeError,
        "date.at",
    ),
    (
        lambda: Date(datetime(1969, 12, 31, 23, tzinfo=UTC)),
        {"type": "date", "at": "1969-12-31T23:00:00Z"},
        InvalidDatetimeError,
        "date.at",
    ),
    (
        lambda: Date(datetime(9999, 1, 1, tzinfo=UTC)),
        {"type": "date", "at": "9999-01-01T00:00:00Z"},
        InvalidDatetimeError,
        "date.at",
    ),
    (
        lambda: Date(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))),
        None,
        InvalidDatetimeError,
        "date.at",
    ),
    (
        lambda: Date(1767225600),  # type: ignore[arg-type]
        {"type": "date", "at": 1767225600},
        InvalidDatetimeError,
        "date.at",
    ),
    (
        lambda: Date("10000-01-01T00:00:00Z"),  # type: ignore[arg-type]
        {"type": "date", "at": "10000-01-01T00:00:00Z"},
        InvalidDatetimeError,
        "date.at",
    ),
    # pydantic's own checks become InvalidTriggerError naming the field
    (lambda: Cron(), {"type": "cron"}, InvalidTriggerError, "cron.expression"),
    (
        lambda: Cron("* * * * *", extra=1),
        {"type": "cron", "expression": "* * * * *", "extra": 1},
        InvalidTriggerError,
        "cron.extra",
    ),
    (lambda: Cron("* * * * *", type="interval"), None, InvalidTriggerError, "cron.type"),
    (lambda: Interval(), {"type": "interval"}, InvalidTriggerError, "interval.every"),
    (lambda: Date(), {"type": "date"}, InvalidTriggerError, "date.at"),
    (
        lambda: Date(T0, every=5),
        {"type": "date", "at": "2026-01-01T00:00:00Z", "every": 5},
        InvalidTriggerError,
        "date.every",
    ),
]


@pytest.mark.parametrize(("build", "data", "error", "field"), BAD)
def test_refused_by_constructor(
    build: Callable[[], object], data: object, error: type[TaskmgrError], field: str
) -> None:
    with pytest.raises(error) as info:
        build()
    assert type(info.value) is error
    assert getattr(info.value, "field", None) == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("data", "error", "field"), [(d, e, f) for _, d, e, f in BAD if d is not None]
)
def test_refused_by_parse_trigger(data: object, error: type[TaskmgrError], field: str) -> None:
    with pytest.raises(error) as info:
        parse_trigger(data)
    assert type(info.value) is error
    assert getattr(info.value, "field", None) == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "weekly"}, "type"),
        ({"expression": "* * * * *"}, "type"),
        ({"type": None}, "type"),
        ({"type": ["cron"]}, "type"),
        ([], "trigger"),
        ("cron", "trigger"),
        (None, "trigger"),
    ],
)
def test_parse_trigger_shape(data: object, field: str) -> None:
    with pytest.raises(InvalidTriggerError) as info:
        parse_trigger(data)
    assert type(info.value) is InvalidTriggerError
    assert info.value.field == field


def test_messages_state_the_allowed_range() -> None:
    with pytest.raises(InvalidIntervalError, match=r"1 second to 366 days"):
        Interval(0)
    with pytest.raises(InvalidDatetimeError, match=r"1970-9998"):
        Date(datetime(1960, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidCronError, match=r"out of range 0-23"):
        Cron("0 24 * * *")


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"cron\.minute"):
        Cron("61 * * * *")


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_naive_after_is_refused(spec: Cron | Interval | Date) -> None:
    with pytest.raises(InvalidDatetimeError) as info:
        spec.next_fire_times(NAIVE)
    assert info.value.field == "after"


def test_time_zone_aliases_are_accepted() -> None:
    assert Cron("0 0 * * *", timezone="US/Eastern").next_fire_times(T0) == [
        datetime(2026, 1, 1, 5, tzinfo=UTC)
    ]
    assert Cron("0 0 * * *", timezone="UTC").timezone == "UTC"


def test_schedules_are_cached() -> None:
    Cron("7 7 * * *", timezone="Asia/Tokyo").next_fire_times(T0)
    hits = _engine._schedule.cache_info().hits
    Cron("7 7 * * *", timezone="Asia/Tokyo").next_fire_times(T0 + timedelta(days=1))
    assert _engine._schedule.cache_info().hits == hits + 1
