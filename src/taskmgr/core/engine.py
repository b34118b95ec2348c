"""Fire times for cron specs: the only module of taskmgr that imports APScheduler.

APScheduler's ``CronTrigger`` matches the calendar, but on its own it reads
crontab weekdays wrongly (0 = Monday), ANDs day-of-month with day-of-week, and
fires fixed-time jobs twice at fall-back. So it is used only as a calendar: it
runs in a clock without DST (local wall times written as UTC) and yields wall
slots; this module maps each wall slot to real instants with the Vixie rule
(``docs/guarantees.md``, G5; the cases are in ``docs/cron.md``):

- fixed-time jobs (no ``*`` in minute or hour): a wall slot fires once, at its
  first occurrence; a slot inside a spring-forward gap fires at the first instant
  after the gap; slots mapping to one instant fire once.
- other jobs follow real time: a repeated wall slot fires on both passes, a
  skipped one never.

Parsed schedules are cached per (expression, time zone), so the hot path costs
one APScheduler step per fire.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from taskmgr.core.cron import CronExpr, fires_ever, parse_cron

__all__ = ["cron_fire_times", "first_instant"]

_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _compress(values: frozenset[int], low: int, high: int) -> str:
    """Write ``values`` as APScheduler field text: ``*`` or comma-joined runs."""
    if values == frozenset(range(low, high + 1)):
        return "*"
    ordered = sorted(values)
    # APScheduler tests each comma-separated expression in turn, so '*/5' written as
    # twelve values would cost twelve times as much per step: keep progressions whole.
    if len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        if step > 1 and ordered == list(range(ordered[0], ordered[-1] + 1, step)):
            return f"{ordered[0]}-{ordered[-1]}/{step}"
    runs: list[str] = []
    start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if value is not None:
            start = previous = value
    return ",".join(runs)


def _calendar(
    cron: CronExpr, *, days: frozenset[int] | None, weekdays: frozenset[int] | None
) -> Any:
    """An APScheduler trigger over wall time; ``None`` for a day field means every day."""
    return CronTrigger(
        minute=_compress(cron.minutes, 0, 59),
        hour=_compress(cron.hours, 0, 23),
        day="*" if days is None else _compress(days, 1, 31),
        month=_compress(cron.months, 1, 12),
        # APScheduler numbers weekdays from Monday = 0, crontab from Sunday = 0.
        day_of_week="*"
        if weekdays is None
        else _compress(frozenset((day - 1) % 7 for day in weekdays), 0, 6),
        timezone=UTC,
    )


def _next_wall(trigger: Any, wall: datetime) -> datetime | None:
    """The first slot of ``trigger`` strictly after the naive wall time ``wall``."""
    try:
        found: datetime | None = trigger.get_next_fire_time(
            None, (wall + _ONE_MICROSECOND).replace(tzinfo=UTC)
        )
    except OverflowError:  # past year 9999
        return None
    return None if found is None else found.replace(tzinfo=None)


class _CronSchedule:
    __slots__ = ("_calendars", "_fixed_time", "_zone")

    def __init__(self, cron: CronExpr, zone: ZoneInfo) -> None:
        self._zone = zone
        self._fixed_time = cron.fixed_time
        if cron.dom_restricted and cron.dow_restricted:
            # crontab(5): a day matches if either field matches, so the schedule is
            # the union of two calendars. The day-of-month half may never fire on its
            # own (``31 2 MON``): leave it out rather than let APScheduler search to 9999.
            self._calendars = [_calendar(cron, days=None, weekdays=cron.days_of_week)]
            if fires_ever(cron.months, cron.days_of_month, dom_or_dow=False):
                self._calendars.append(_calendar(cron, days=cron.days_of_month, weekdays=None))
        else:
            self._calendars = [_calendar(cron, days=cron.days_of_month, weekdays=cron.days_of_week)]

    def _walls(self, wall: datetime) -> Iterator[datetime]:
        """Wall slots strictly after ``wall``, increasing."""
        calendars = self._calendars
        upcoming = [_next_wall(calendar, wall) for calendar in calendars]
        while True:
            slot = min((item for item in upcoming if item is not None), default=None)
            if slot is None:
                return
            yield slot
            for index, item in enumerate(upcoming):
                if item == slot:
                    upcoming[index] = _next_wall(calendars[index], slot)

    def _instants(self, wall: datetime) -> tuple[datetime, datetime]:
        """The UTC instants of ``wall`` read with fold=0 and fold=1.

        Equal: an ordinary time. First < second: a repeated time (both passes).
        First > second: a skipped time (PEP 495 maps it with the offsets around the gap).
        """
        zone = self._zone
        return (
            wall.replace(tzinfo=zone).astimezone(UTC),
            wall.replace(tzinfo=zone, fold=1).astimezone(UTC),
        )

    def _offset(self, moment: datetime) -> timedelta:
        offset = moment.astimezone(self._zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return offset

    def _lookback(self, after: datetime) -> timedelta:
        """How far before ``after``'s wall time a slot can still occur after ``after``.

        Zero unless the clock is turned back within that distance of ``after``: then
        the wall times just before ``after``'s come round again.
        """
        offset = self._offset(after)
        try:
            step = offset - self._offset(after + _ONE_DAY)
            if step <= _ZERO:
                return _ZERO
            return max(offset - self._offset(after + step), _ZERO)
        except OverflowError:
            return _ZERO

    def fire_times(self, after: datetime, n: int) -> list[datetime]:
        after = after.astimezone(UTC)
        fires: list[datetime] = []
        try:
            if self._fixed_time:
                self._fixed_fires(after, n, fires)
            else:
                self._real_time_fires(after, n, fires)
        except OverflowError:  # the calendar ran past year 9999
            pass
        return fires

    def _fixed_fires(self, after: datetime, n: int, fires: list[datetime]) -> None:
        # Fold=0 instants never decrease with wall time, so every slot at or before
        # ``after``'s wall time fires at or before ``after``.
        wall = after.astimezone(self._zone).replace(tzinfo=None)
        for slot in self._walls(wall):
            instant = first_instant(slot, self._zone)
            if instant > after and (not fires or instant > fires[-1]):
                fires.append(instant)
                if len(fires) >= n:
                    return

    def _real_time_fires(self, after: datetime, n: int, fires: list[datetime]) -> None:
        wall = after.astimezone(self._zone).replace(tzinfo=None) - self._lookback(after)
        # Second passes of repeated slots wait here until every earlier instant is out.
        later: list[datetime] = []

        def emit(instant: datetime) -> bool:
            if instant > after:
                fires.append(instant)
            return len(fires) >= n

        for slot in self._walls(wall):
            first, second = self._instants(slot)
            if first > second:
                continue  # skipped by a spring-forward: real time never shows it
            # No later slot can happen before ``first``: fold=0 instants increase.
            while later and later[0] < first:
                if emit(heapq.heappop(later)):
                    return
            if emit(first):
                return
            if second != first:
                heapq.heappush(later, second)
        while later:
            if emit(heapq.heappop(later)):
                return


@functools.lru_cache(maxsize=4096)
def _schedule(expression: str, zone_name: str) -> _CronSchedule:
    return _CronSchedule(parse_cron(expression), ZoneInfo(zone_name))


def cron_fire_times(expression: str, zone_name: str, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times strictly after ``after``, as increasing UTC datetimes.

    ``expression`` and ``zone_name`` must already be valid (the Cron spec validates
    them); ``after`` must be aware. Fewer than ``n`` only if the calendar ends (year 9999).
    """
    if n <= 0:
        return []
    return _schedule(expression, zone_name).fire_times(after, n)


def _gap_end(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``(before, after]`` that has ``after``'s UTC offset."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:  # tz transitions fall on whole seconds
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def first_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) at which the clock of ``zone`` first reads the naive wall time
    ``wall``: its first pass when it is shown twice, the end of the gap when it is
    skipped. Never decreases as ``wall`` grows."""
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first <= second:
        return first
    return _gap_end(second, first, zone)  # PEP 495: a skipped time reads first > second
