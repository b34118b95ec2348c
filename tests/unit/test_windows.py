"""Maintenance windows as models: what they accept and refuse, when a recurring one is
open in real time (DST nights included), how overlap is found, and the weekly
shorthand; exclusion dates as a job option."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from taskmgr import scheduled_job
from taskmgr.core.exclusions import check_exclude_dates, excluded_date
from taskmgr.core.models import JobDefinition
from taskmgr.core.triggers import Manual
from taskmgr.core.window_calendar import parse_weekly
from taskmgr.core.windows import (
    MaintenanceWindow,
    WindowAction,
    check_new_window,
    check_no_overlap,
    deferral,
    due_after_holds,
    holding_window,
    is_deferred,
    skipping_window,
)
from taskmgr.exceptions import (
    InvalidCronError,
    InvalidDatetimeError,
    InvalidInputError,
    InvalidPolicyError,
    InvalidTimezoneError,
    InvalidWindowError,
    WindowInPastError,
    WindowOverlapError,
)

HOUR = timedelta(hours=1)
BERLIN = "Europe/Berlin"
#: Sundays 02:00-04:00 Berlin time.
SUNDAY_DB = {"cron": "0 2 * * SUN", "duration": 2 * 3600, "timezone": BERLIN}
#: 2026: clocks go forward on Sunday 29 March (02:00 CET -> 03:00 CEST, 01:00 UTC) and
#: back on Sunday 25 October (03:00 CEST -> 02:00 CET, 01:00 UTC).
SPRING = datetime(2026, 3, 29, tzinfo=UTC)
AUTUMN = datetime(2026, 10, 25, tzinfo=UTC)


def utc(day: datetime, hour: float) -> datetime:
    return day + timedelta(hours=hour)


def window(name: str = "w", **fields: object) -> MaintenanceWindow:
    return MaintenanceWindow(name=name, **fields)


# -- what a window accepts ------------------------------------------------------------


def test_a_recurring_window_reads_its_cron_in_utc_unless_told() -> None:
    made = window(cron="0 2 * * *", duration=timedelta(minutes=30))
    assert (made.timezone, made.duration, made.action) == ("UTC", 1800.0, WindowAction.SKIP)
    assert made.recurring
    one_off = window(start="2026-01-01T00:00:00+01:00", end=datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert one_off.start == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert one_off.timezone is None and not one_off.recurring


@pytest.mark.parametrize(
    ("fields", "error", "field"),
    [
        ({"start": datetime(2026, 1, 2, tzinfo=UTC), "end": datetime(2026, 1, 1, tzinfo=UTC)},
         InvalidWindowError, "end"),
        ({"start": datetime(2026, 1, 1, tzinfo=UTC), "end": datetime(2026, 1, 1, tzinfo=UTC)},
         InvalidWindowError, "end"),
        ({"start": datetime(2026, 1, 1, tzinfo=UTC)}, InvalidWindowError, "end"),
        ({}, InvalidWindowError, "start"),
        ({"cron": "0 2 * * *"}, InvalidWindowError, "duration"),
        ({"cron": "0 2 * * *", "duration": 60, "start": datetime(2026, 1, 1, tzinfo=UTC)},
         InvalidWindowError, "cron"),
        ({"cron": "0 2 * * *", "duration": 0}, InvalidWindowError, "duration"),
        ({"cron": "0 2 * * *", "duration": -5}, InvalidWindowError, "duration"),
        ({"cron": "0 * * * *", "duration": 3601}, InvalidWindowError, "duration"),
        ({"cron": "0 2 * * *", "duration": 60, "timezone": "Mars/Olympus"},
         InvalidTimezoneError, "timezone"),
        ({"cron": "0 2 * * *", "duration": 60, "timezone": "+02:00"},
         InvalidTimezoneError, "timezone"),
        ({"cron": "0 25 * * *", "duration": 60}, InvalidCronError, "cron.hour"),
        ({"start": datetime(2026, 1, 1), "end": datetime(2026, 1, 2)},
         InvalidDatetimeError, "start"),
        ({"start": datetime(2026, 1, 1, tzinfo=UTC), "end": datetime(2026, 1, 2, tzinfo=UTC),
          "timezone": BERLIN}, InvalidWindowError, "timezone"),
        ({"cron": "0 2 * * *", "duration": 60, "action": "pause"}, InvalidWindowError, "action"),
        ({"cron": "0 2 * * *", "duration": 60, "job_key": "no spaces"}, InvalidInputError,
         "job_key"),
        ({"cron": "0 2 * * *", "duration": 60, "reason": "x" * 501}, InvalidInputError, "reason"),
    ],
)  # fmt: skip
def test_a_window_that_cannot_be_kept_is_refused_naming_its_field(
    fields: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        window(**fields)
    assert getattr(caught.value, "field", None) == field


def test_a_name_is_a_key_users_can_type() -> None:
    with pytest.raises(InvalidInputError, match="name"):
        window("sunday db", **SUNDAY_DB)
    assert window("sunday-db.v2:main", **SUNDAY_DB).name == "sunday-db.v2:main"


def test_a_window_as_long_as_the_time_between_its_starts_is_accepted() -> None:
    # every weekday 22:00-06:00 spans the weekend gap too; daily at 00:00 for a full day
    assert window(cron="0 0 * * *", duration=86400).duration == 86400
    weekdays = window(cron="0 22 * * MON-FRI", duration=8 * 3600)
    assert weekdays.duration == 8 * 3600
    with pytest.raises(InvalidWindowError, match="86400 s between two starts"):
        window(cron="0 22 * * MON-FRI", duration=86401)


def test_a_one_off_window_already_over_is_refused() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    past = window(start=now - 2 * HOUR, end=now)
    with pytest.raises(WindowInPastError) as caught:
        check_new_window(past, now)
    assert caught.value.field == "end"
    ongoing = window(start=now - HOUR, end=now + HOUR)
    assert check_new_window(ongoing, now) is ongoing


# -- when a recurring window is open -----------------------------------------------------


def test_an_ordinary_sunday_is_open_from_two_until_four_local_time() -> None:
    sunday = datetime(2026, 6, 7, tzinfo=UTC)  # CEST: 02:00-04:00 local is 00:00-02:00 UTC
    made = window(**SUNDAY_DB)
    assert made.spans(sunday - HOUR, sunday + 6 * HOUR) == [(sunday, utc(sunday, 2))]
    assert made.is_open(sunday) and made.is_open(utc(sunday, 1.99))
    assert not made.is_open(utc(sunday, 2)) and not made.is_open(sunday - timedelta(seconds=1))


def test_on_the_spring_forward_night_it_opens_when_the_clocks_jump() -> None:
    # 02:00 local does not exist: the clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC),
    # so the window is open from then until 04:00 CEST: one hour of real time
    made = window(**SUNDAY_DB)
    assert made.spans(SPRING - 3 * HOUR, SPRING + 6 * HOUR) == [(utc(SPRING, 1), utc(SPRING, 2))]
    assert not made.is_open(utc(SPRING, 0.999))
    assert made.is_open(utc(SPRING, 1)) and not made.is_open(utc(SPRING, 2))


def test_on_the_fall_back_night_it_is_open_from_the_first_two_until_four() -> None:
    # 02:00 CEST is 00:00 UTC; 02:00-03:00 is shown twice; 04:00 CET is 03:00 UTC
    made = window(**SUNDAY_DB)
    assert made.spans(AUTUMN - 3 * HOUR, AUTUMN + 6 * HOUR) == [(AUTUMN, utc(AUTUMN, 3))]
    assert made.span_at(utc(AUTUMN, 1.5)) == (AUTUMN, utc(AUTUMN, 3))  # 02:30 CET, 2nd pass
    assert not made.is_open(utc(AUTUMN, 3)) and not made.is_open(AUTUMN - timedelta(seconds=1))


def test_an_occurrence_wholly_inside_the_skipped_hour_never_opens() -> None:
    made = window(cron="15 2 * * *", duration=30 * 60, timezone=BERLIN)
    assert made.spans(SPRING - 3 * HOUR, SPRING + 6 * HOUR) == []
    day_before = SPRING - timedelta(days=1)  # 02:15-02:45 CET: 01:15-01:45 UTC
    assert made.spans(day_before, day_before + 6 * HOUR) == [
        (utc(day_before, 1.25), utc(day_before, 1.75))
    ]


def test_an_occurrence_is_open_once_on_the_night_its_start_is_shown_twice() -> None:
    # 02:30-02:45 local on the fall-back night: its first pass only
    made = window(cron="30 2 * * *", duration=15 * 60, timezone=BERLIN)
    assert made.spans(AUTUMN - HOUR, AUTUMN + 6 * HOUR) == [(utc(AUTUMN, 0.5), utc(AUTUMN, 0.75))]
    assert not made.is_open(utc(AUTUMN, 1.6))  # 02:36 CET, the second pass


def test_a_window_crossing_midnight_is_found_from_the_next_day() -> None:
    made = window(cron="0 22 * * *", duration=4 * 3600)  # 22:00-02:00 UTC
    monday = datetime(2026, 6, 8, tzinfo=UTC)
    assert made.span_at(utc(monday, 1)) == (monday - 2 * HOUR, utc(monday, 2))
    assert made.next_span(utc(monday, 3)) == (utc(monday, 22), utc(monday, 26))


# -- the rules of a claim ------------------------------------------------------------------


def test_the_rules_pick_the_windows_that_cover_the_job() -> None:
    sunday = datetime(2026, 6, 7, tzinfo=UTC)
    skip_all = window("all", **SUNDAY_DB)
    defer_one = window(
        "one", job_key="nightly", action="defer", start=utc(sunday, 5), end=utc(sunday, 6)
    )
    windows = [skip_all, defer_one]
    assert skipping_window("other", utc(sunday, 1), windows) is skip_all
    assert skipping_window("other", utc(sunday, 5), windows) is None
    assert holding_window("nightly", utc(sunday, 5), windows, utc(sunday, 5.5)) == utc(sunday, 6)
    # over by now: not held any more (its misfire policy decides)
    assert holding_window("nightly", utc(sunday, 5), windows, utc(sunday, 6)) is None
    assert holding_window("other", utc(sunday, 5), windows, utc(sunday, 5.5)) is None
    deferrals = deferral(windows, utc(sunday, 5.5))
    assert deferrals == [("nightly", utc(sunday, 5), utc(sunday, 6))]
    assert is_deferred("nightly", utc(sunday, 5.2), deferrals)
    assert not is_deferred("nightly", utc(sunday, 4.9), deferrals)
    assert not is_deferred("other", utc(sunday, 5.2), deferrals)
    assert due_after_holds("nightly", utc(sunday, 5.2), windows) == utc(sunday, 6)
    assert due_after_holds("nightly", utc(sunday, 7), windows) == utc(sunday, 7)


# -- overlap --------------------------------------------------------------------------


def test_windows_of_one_scope_must_not_overlap_within_a_year() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    sundays = window("sundays", **SUNDAY_DB)
    # Sunday 03:00-05:00 UTC is 05:00-07:00 in Berlin: after; 01:00-03:00 UTC overlaps
    later = window("later", cron="0 3 * * SUN", duration=7200)
    check_no_overlap(later, [sundays], now)
    clash = window("clash", cron="0 1 * * SUN", duration=7200)
    with pytest.raises(WindowOverlapError, match="'sundays'"):
        check_no_overlap(clash, [sundays], now)
    # a one-off window in December, on a Sunday at 03:30 Berlin time (CET)
    december = datetime(2026, 12, 6, 2, 30, tzinfo=UTC)
    one_off = window("once", start=december, end=december + HOUR)
    with pytest.raises(WindowOverlapError):
        check_no_overlap(one_off, [sundays], now)
    # other scopes never clash: a job's window and a service-wide one
    check_no_overlap(clash.model_copy(update={"job_key": "nightly"}), [sundays], now)
    # touching is not overlapping: half-open spans
    after = window("after", start=december + HOUR, end=december + 2 * HOUR)
    check_no_overlap(after, [one_off], now)
    # an overlap more than a year ahead is not looked for
    far = window("far", start=now + timedelta(days=400), end=now + timedelta(days=401))
    check_no_overlap(far, [window("far2", start=far.start, end=far.end)], now)


# -- the weekly shorthand -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cron", "hours"),
    [
        ("sun 02:00-04:00", "0 2 * * sun", 2),
        ("mon-fri 22:00-06:00", "0 22 * * mon-fri", 8),
        ("sat,sun 00:30-24:00", "30 0 * * sat,sun", 23.5),
        ("* 12:00-12:15", "0 12 * * *", 0.25),
        (" SUN   3:05 - 3:06 ", "5 3 * * SUN", 1 / 60),
    ],
)
def test_a_weekly_spec_is_a_cron_start_and_a_duration(spec: str, cron: str, hours: float) -> None:
    assert parse_weekly(spec) == (cron, timedelta(hours=hours))


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("sunday", InvalidWindowError),
        ("sun 02:00", InvalidWindowError),
        ("sun 25:00-26:00", InvalidWindowError),
        ("sun 02:60-03:00", InvalidWindowError),
        ("sun 02:00-24:30", InvalidWindowError),
        ("funday 02:00-03:00", InvalidCronError),
        (42, InvalidWindowError),
    ],
)
def test_a_weekly_spec_of_another_shape_is_refused(spec: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_weekly(spec)


# -- exclusion dates ------------------------------------------------------------------------


def test_exclusion_dates_are_kept_sorted_once_each() -> None:
    assert check_exclude_dates(["2026-12-25", date(2026, 1, 1), "2026-12-25"]) == (
        date(2026, 1, 1),
        date(2026, 12, 25),
    )
    assert check_exclude_dates(None) == () == check_exclude_dates([])


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("2026-12-25", "exclude_dates"),
        (["2026-12-25", "25.12.2026"], "exclude_dates[1]"),
        ([datetime(2026, 12, 25, tzinfo=UTC)], "exclude_dates[0]"),
        (["2026-13-01"], "exclude_dates[0]"),
        ([20261225], "exclude_dates[0]"),
        ([date(2026, 1, 1) + timedelta(days=n) for n in range(1001)], "exclude_dates"),
    ],
)
def test_exclusion_dates_that_are_not_dates_are_refused(value: object, field: str) -> None:
    with pytest.raises(InvalidPolicyError) as caught:
        check_exclude_dates(value)
    assert caught.value.field == field


def test_a_slot_is_excluded_by_its_date_in_the_given_zone() -> None:
    christmas = (date(2026, 12, 25),)
    late_eve = datetime(2026, 12, 24, 23, 30, tzinfo=UTC)  # 00:30 on the 25th in Berlin
    assert excluded_date(christmas, "UTC", late_eve) is None
    assert excluded_date(christmas, BERLIN, late_eve) == date(2026, 12, 25)
    assert excluded_date((), BERLIN, late_eve) is None


@scheduled_job(cron="0 9 * * *", timezone=BERLIN, exclude_dates=["2026-12-25"])
def holiday_aware() -> None: ...


def test_exclusion_dates_are_an_option_of_a_job_with_a_schedule() -> None:
    definition = holiday_aware.__taskmgr_job__  # type: ignore[attr-defined]
    assert definition.exclude_dates == (date(2026, 12, 25),)
    without = definition.model_copy(update={"exclude_dates": ()})
    assert without.fingerprint() != definition.fingerprint()
    with pytest.raises(InvalidPolicyError, match="task"):
        JobDefinition(key="t", func="f", trigger=Manual(), exclude_dates=["2026-12-25"])


@pytest.mark.parametrize(
    "fields",
    [
        SUNDAY_DB,
        {"cron": "30 2 * * *", "duration": 15 * 60, "timezone": BERLIN},
        {"cron": "*/10 * * * *", "duration": 300, "timezone": BERLIN},
        {"cron": "0 22 * * SAT", "duration": 8 * 3600, "timezone": "America/New_York"},
    ],
)
def test_whether_a_window_is_open_agrees_with_its_spans_minute_by_minute(
    fields: dict[str, object],
) -> None:
    made = window(**fields)
    for night in (SPRING, AUTUMN, datetime(2026, 3, 8, 6, tzinfo=UTC)):  # US spring
        low, high = night - 6 * HOUR, night + 6 * HOUR
        spans = made.spans(low, high)
        moment = low
        while moment < high:
            inside = any(start <= moment < end for start, end in spans)
            assert made.is_open(moment) is inside, moment
            moment += timedelta(minutes=1)
