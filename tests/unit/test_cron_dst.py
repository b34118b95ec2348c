"""Cron across DST transitions: the Vixie rule of docs/guarantees.md, G5 (docs/cron.md).

Fixed-time jobs (no '*' in minute or hour) fire once per wall slot: a slot in a
spring-forward gap at the first instant after the gap, a repeated slot at its
first occurrence. Other jobs follow real time. The property tests compare the
engine with a brute-force oracle that walks real time minute by minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskmgr.core.cron import CronExpr, parse_cron
from taskmgr.core.triggers import Cron

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires_between(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """All fires in ``(start, end]``."""
    result = Cron(expression, timezone=zone).next_fire_times(start, 500)
    assert result[-1] > end, "raise n"
    return [fire for fire in result if fire <= end]


def local_day(zone: str, year: int, month: int, day: int) -> tuple[datetime, datetime]:
    """The UTC instants just before local midnight and the next local midnight."""
    tz = ZoneInfo(zone)
    start = datetime(year, month, day, tzinfo=tz).astimezone(UTC)
    end = (datetime(year, month, day, tzinfo=tz) + timedelta(days=1)).astimezone(UTC)
    return start - timedelta(microseconds=1), end - timedelta(microseconds=1)


# -- spring forward -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "gap_end", "next_day"),
    [
        (BERLIN, (2026, 3, 29), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)),
        (NEW_YORK, (2026, 3, 8), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)),
        (BERLIN, (2027, 3, 28), utc(2027, 3, 28, 1, 0), utc(2027, 3, 29, 0, 30)),
        (NEW_YORK, (2027, 3, 14), utc(2027, 3, 14, 7, 0), utc(2027, 3, 15, 6, 30)),
    ],
)
def test_spring_forward_fixed_time_fires_once_after_the_gap(
    zone: str, day: tuple[int, int, int], gap_end: datetime, next_day: datetime
) -> None:
    start, end = local_day(zone, *day)
    assert fires_between("30 2 * * *", zone, start, end) == [gap_end]  # 03:00 local
    assert Cron("30 2 * * *", timezone=zone).next_fire_times(start, 2) == [gap_end, next_day]
    # Several gap slots mapping to one instant fire once; so does a real slot there.
    assert fires_between("0,30 2 * * *", zone, start, end) == [gap_end]
    assert fires_between("0,30 2,3 * * *", zone, start, end) == [
        gap_end,
        gap_end + timedelta(minutes=30),
    ]
    # Every slot of the skipped hour still fires only once.
    every_minute_of_2 = "0-59 2 * * *"
    assert fires_between(every_minute_of_2, zone, start, end) == [gap_end]


@pytest.mark.parametrize(
    ("zone", "day", "gap_end"),
    [
        ("America/Havana", (2026, 3, 8), utc(2026, 3, 8, 5)),  # 00:00 -> 01:00
        ("America/Santiago", (2026, 9, 6), utc(2026, 9, 6, 4)),  # 00:00 -> 01:00
        ("Africa/Cairo", (2026, 4, 24), utc(2026, 4, 23, 22)),  # 00:00 -> 01:00
    ],
)
def test_spring_forward_at_midnight(
    zone: str, day: tuple[int, int, int], gap_end: datetime
) -> None:
    # The local day starts at 01:00, so a midnight job runs then.
    tz = ZoneInfo(zone)
    before = datetime(*day, tzinfo=tz) - timedelta(hours=12)
    assert Cron("0 0 * * *", timezone=zone).next_fire_times(before, 1) == [gap_end]
    assert gap_end.astimezone(tz).hour == 1


def test_spring_forward_thirty_minute_shift_lord_howe() -> None:
    # 2026-10-04 02:00 +10:30 -> 02:30 +11:00, at 15:30Z on Oct 3.
    cron = Cron("15 2 * * *", timezone="Australia/Lord_Howe")
    assert cron.next_fire_times(utc(2026, 10, 3), 2) == [
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 4, 15, 15),
    ]


def test_spring_forward_real_time_job_skips_the_hour() -> None:
    start, end = local_day(BERLIN, 2026, 3, 29)
    assert fires_between("*/15 2 * * *", BERLIN, start, end) == []
    result = fires_between("30 * * * *", BERLIN, start, end)
    assert len(result) == 23
    assert utc(2026, 3, 29, 0, 30) in result  # 01:30 CET
    assert utc(2026, 3, 29, 1, 30) in result  # 03:30 CEST
    start, end = local_day(NEW_YORK, 2026, 3, 8)
    assert len(fires_between("30 * * * *", NEW_YORK, start, end)) == 23


# -- fall back -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "day", "expected"),
    [
        ("30 2 * * *", BERLIN, (2026, 10, 25), [utc(2026, 10, 25, 0, 30)]),
        ("30 1 * * *", NEW_YORK, (2026, 11, 1), [utc(2026, 11, 1, 5, 30)]),
        ("30 2 * * *", NEW_YORK, (2026, 11, 1), [utc(2026, 11, 1, 7, 30)]),  # not repeated
        ("30 2 * * *", BERLIN, (2027, 10, 31), [utc(2027, 10, 31, 0, 30)]),
        ("30 1 * * *", NEW_YORK, (2027, 11, 7), [utc(2027, 11, 7, 5, 30)]),
        ("0,30 2 * * *", BERLIN, (2026, 10, 25), [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30)]),
        ("30 0 * * *", "America/Havana", (2026, 11, 1), [utc(2026, 11, 1, 4, 30)]),  # 00:30 CDT
        ("45 1 * * *", "Australia/Lord_Howe", (2026, 4, 5), [utc(2026, 4, 4, 14, 45)]),
    ],
)
def test_fall_back_fixed_time_fires_once_at_first_occurrence(
    expression: str, zone: str, day: tuple[int, int, int], expected: list[datetime]
) -> None:
    start, end = local_day(zone, *day)
    assert fires_between(expression, zone, start, end) == expected


def test_fall_back_fixed_time_from_inside_the_repeat() -> None:
    cron = Cron("30 1 * * *", timezone=NEW_YORK)
    # 01:00 EST, the second pass: today's 01:30 already fired at 05:30Z.
    assert cron.next_fire_times(utc(2026, 11, 1, 6), 1) == [utc(2026, 11, 2, 6, 30)]
    # 01:45 EDT, the first pass: same.
    assert cron.next_fire_times(utc(2026, 11, 1, 5, 45), 1) == [utc(2026, 11, 2, 6, 30)]
    assert cron.next_fire_times(utc(2026, 11, 1, 5, 29), 1) == [utc(2026, 11, 1, 5, 30)]


@pytest.mark.parametrize(
    ("zone", "day", "repeated"),
    [
        (BERLIN, (2026, 10, 25), [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)]),
        (NEW_YORK, (2026, 11, 1), [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)]),
    ],
)
def test_fall_back_real_time_job_fires_on_both_passes(
    zone: str, day: tuple[int, int, int], repeated: list[datetime]
) -> None:
    start, end = local_day(zone, *day)
    result = fires_between("30 * * * *", zone, start, end)
    assert len(result) == 25
    assert set(repeated) <= set(result)
    assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(result))


def test_fall_back_real_time_job_resumes_from_inside_the_repeat() -> None:
    cron = Cron("30 * * * *", timezone=NEW_YORK)
    # 01:45 EDT: 01:30 EST (06:30Z) is still to come, though its wall time is earlier.
    assert cron.next_fire_times(utc(2026, 11, 1, 5, 45), 2) == [
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 1, 7, 30),
    ]
    assert cron.next_fire_times(utc(2026, 11, 1, 5, 30), 1) == [utc(2026, 11, 1, 6, 30)]
    quarter = Cron("*/15 2 * * *", timezone=BERLIN)
    start, end = local_day(BERLIN, 2026, 10, 25)
    assert len(fires_between("*/15 2 * * *", BERLIN, start, end)) == 8
    assert quarter.next_fire_times(utc(2026, 10, 25, 0, 50), 3) == [
        utc(2026, 10, 25, 1, 0),  # 02:00 CET, the second pass
        utc(2026, 10, 25, 1, 15),
        utc(2026, 10, 25, 1, 30),
    ]


# -- property tests against an oracle ---------------------------------------------------

ZONES = [
    BERLIN,
    NEW_YORK,
    "Australia/Lord_Howe",  # 30-minute shift
    "America/Santiago",  # southern hemisphere, transitions at midnight
    "America/Havana",  # transitions at midnight
    "Africa/Cairo",
    "Pacific/Chatham",  # +12:45 / +13:45
    "UTC",
]


def _transitions(zone: str) -> list[datetime]:
    tz = ZoneInfo(zone)
    found = []
    moment = utc(2026, 1, 1)
    offset = moment.astimezone(tz).utcoffset()
    while moment < utc(2028, 1, 1):
        moment += timedelta(minutes=15)
        current = moment.astimezone(tz).utcoffset()
        if current != offset:
            found.append(moment)
            offset = current
    return found or [utc(2026, 6, 1)]


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}


def _matches(cron: CronExpr, wall: datetime) -> bool:
    day_of_month = wall.day in cron.days_of_month
    day_of_week = wall.isoweekday() % 7 in cron.days_of_week
    if cron.dom_restricted and cron.dow_restricted:
        day_ok = day_of_month or day_of_week
    else:
        day_ok = day_of_month and day_of_week
    return (
        day_ok
        and wall.minute in cron.minutes
        and wall.hour in cron.hours
        and wall.month in cron.months
    )


def oracle(expression: str, zone: str, after: datetime, end: datetime) -> list[datetime]:
    """Fires in ``(after, end]`` by walking real time minute by minute (G5 read literally)."""
    cron = parse_cron(expression)
    tz = ZoneInfo(zone)
    minute = timedelta(minutes=1)
    moment = after.replace(second=0, microsecond=0) + minute
    previous_wall = (moment - minute).astimezone(tz).replace(tzinfo=None)
    result = []
    while moment <= end:
        local = moment.astimezone(tz)
        wall = local.replace(tzinfo=None)
        fire = _matches(cron, wall)
        if cron.fixed_time:
            fire = fire and local.fold == 0
            skipped = previous_wall + minute
            while not fire and skipped < wall:  # walls a spring-forward jumped over
                fire = _matches(cron, skipped)
                skipped += minute
        if fire:
            result.append(moment)
        previous_wall = wall
        moment += minute
    return result


FIELD_HOURS = st.sampled_from(["0", "1", "2", "3", "23", "0-3", "1,2", "2-4/2", "*", "*/2", "*/5"])
FIELD_MINUTES = st.sampled_from(["0", "30", "15,45", "0-59/20", "*/15", "*/7", "*", "59", "10-20"])
FIELD_DOM = st.sampled_from(["*", "*", "*", "1-15", "*/2", "3,4,5,6,7,8,9,10,25,26,27,28,29,30,31"])
FIELD_MONTH = st.sampled_from(["*", "*", "*", "3,4,9,10,11", "MAR-NOV"])
FIELD_DOW = st.sampled_from(["*", "*", "*", "0", "7", "1-5", "SAT,SUN", "*/2"])


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    return " ".join(
        draw(field) for field in (FIELD_MINUTES, FIELD_HOURS, FIELD_DOM, FIELD_MONTH, FIELD_DOW)
    )


@st.composite
def instants_near_transitions(draw: st.DrawFn, zone: str) -> datetime:
    transition = draw(st.sampled_from(TRANSITIONS[zone]))
    shift = draw(st.integers(-36 * 60, 36 * 60))
    moment = transition + timedelta(minutes=shift)
    if draw(st.booleans()):
        moment += timedelta(microseconds=draw(st.integers(1, 59_999_999)))
    return moment


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    return draw(cron_expressions()), zone, draw(instants_near_transitions(zone))


def _check_shape(result: list[datetime], after: datetime) -> None:
    assert all(fire.tzinfo is UTC for fire in result)
    assert all(fire > after for fire in result)
    assert all(earlier < later for earlier, later in pairwise(result))
    assert len(set(result)) == len(result)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_property_matches_oracle(case: tuple[str, str, datetime]) -> None:
    expression, zone, after = case
    result = Cron(expression, timezone=zone).next_fire_times(after, 20)
    assert len(result) == 20
    _check_shape(result, after)
    end = min(result[-1], after + timedelta(hours=36))
    assert [fire for fire in result if fire <= end] == oracle(expression, zone, after, end)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_property_chained_calls_agree(case: tuple[str, str, datetime]) -> None:
    # The scheduler asks for the next fire after the previous one, one at a time.
    expression, zone, after = case
    cron = Cron(expression, timezone=zone)
    batch = cron.next_fire_times(after, 20)
    chained = []
    previous = after
    for _ in range(20):
        (previous,) = cron.next_fire_times(previous, 1)
        chained.append(previous)
    assert chained == batch


@settings(max_examples=100, deadline=None)
@given(cases())
def test_property_after_in_another_zone_is_the_same_instant(
    case: tuple[str, str, datetime],
) -> None:
    expression, zone, after = case
    cron = Cron(expression, timezone=zone)
    elsewhere = after.astimezone(ZoneInfo(zone))
    assert cron.next_fire_times(elsewhere, 5) == cron.next_fire_times(after, 5)
