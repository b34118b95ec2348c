"""When a recurring maintenance window is open, in real time.

A recurring window is a cron expression for its starts, read on the wall clock of an
IANA time zone, and a duration on that wall clock: ``0 2 * * SUN`` for two hours in
``Europe/Berlin`` is "Sundays from 02:00 until 04:00, Berlin time". Each start is one
**occurrence**, open from the instant the zone's clock first reads its start until
the instant it first reads its end (:func:`first_instant`):

- a wall time the clocks skip (spring forward) is reached at the end of the gap, so
  an occurrence starting in the gap opens when the clocks jump, one ending in it closes
  then, and one wholly inside it is never open;
- a wall time the clocks show twice (fall back) is reached at its first pass, so an
  occurrence from 02:00 until 04:00 on that night is open for three hours of real time,
  and each occurrence happens once even if its start is shown twice.

The calendar of starts is the cron calendar of :mod:`taskmgr.core.engine` read in a
zone without DST (local wall times written as UTC), so no start is doubled or lost
to DST before this module maps it to real time. Pure functions: no clock of their own.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from taskmgr.core.cron import parse_cron
from taskmgr.core.engine import cron_fire_times, first_instant
from taskmgr.exceptions import InvalidWindowError

__all__ = [
    "HORIZON",
    "MAX_OCCURRENCES",
    "Recurrence",
    "Span",
    "first_instant",
    "overlap",
    "parse_weekly",
]

#: A half-open interval of real time ``[start, end)``, aware UTC datetimes.
Span = tuple[datetime, datetime]

#: How far ahead two windows are compared for overlap.
HORIZON = timedelta(days=366)
#: Most occurrences of one window compared for overlap (the horizon is cut short for
#: windows that start more often than that in a year).
MAX_OCCURRENCES = 10_000

#: Beyond the window's own duration, how far from an instant an occurrence that covers
#: it can start on the wall clock: the largest change of a zone's UTC offset around it.
_DST_MARGIN = timedelta(hours=3)
_BATCH = 64
_ONE_SECOND = timedelta(seconds=1)
_REFERENCE = datetime(2001, 1, 1)
_LAST = datetime(9999, 12, 31, tzinfo=UTC)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Recurrence:
    """The occurrences of a recurring window: ``expression`` (valid cron) for its
    starts on the wall clock of ``timezone`` (a valid IANA name), each lasting
    ``duration`` of wall-clock time (positive)."""

    expression: str
    timezone: str
    duration: timedelta

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def starts_after(self, wall: datetime, n: int) -> list[datetime]:
        """The next ``n`` starts strictly after the naive wall time ``wall``."""
        fires = cron_fire_times(self.expression, "UTC", wall.replace(tzinfo=UTC), n)
        return [fire.replace(tzinfo=None) for fire in fires]

    def _walk(self, wall: datetime) -> Iterator[datetime]:
        """Every start strictly after ``wall``, increasing."""
        # Usually one or two starts are looked at: ask for two first (the cost of a call
        # grows with n), then more at a time while a long stretch is walked.
        step = 2
        while True:
            batch = self.starts_after(wall, step)
            yield from batch
            if len(batch) < step:
                return
            wall = batch[-1]
            step = min(_BATCH, step * 4)

    def span_of(self, start: datetime) -> Span:
        """The real time the occurrence that starts at the wall time ``start`` is open
        (empty, start == end, when the clocks skip all of it)."""
        zone = self.zone
        return first_instant(start, zone), first_instant(start + self.duration, zone)

    def _margin(self, moment: datetime) -> timedelta:
        zone = self.zone
        offsets = []
        for at in (moment - self.duration - timedelta(days=2), moment, moment + timedelta(days=2)):
            try:
                offset = at.astimezone(zone).utcoffset()
            except OverflowError:
                continue
            if offset is not None:
                offsets.append(offset)
        spread = max(offsets) - min(offsets) if offsets else timedelta(0)
        return max(_DST_MARGIN, spread)

    def containing(self, moment: datetime) -> Span | None:
        """The span of the occurrence open at ``moment`` (aware), if one is."""
        moment = moment.astimezone(UTC)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        spans = _day_spans(self, day)
        index = bisect.bisect_right(spans, (moment, _LAST)) - 1
        if index >= 0 and spans[index][1] > moment:
            return spans[index]
        return None

    def spans(self, low: datetime, high: datetime, limit: int = MAX_OCCURRENCES) -> list[Span]:
        """The non-empty spans that reach into ``[low, high)``, in order, at most
        ``limit`` of them."""
        found: list[Span] = []
        wall = _wall(low, self.zone) - self.duration - self._margin(low)
        for start in self._walk(wall):
            opened, closed = self.span_of(start)
            if opened >= high or len(found) >= limit:
                break
            if closed > low and opened < closed:
                found.append((opened, closed))
        return found

    def shortest_gap(self) -> timedelta:
        """The least time between two starts on the wall clock, over a year of the
        calendar (at least two starts apart; :data:`timedelta.max` with only one)."""
        starts = [*self.starts_after(_REFERENCE, 2)]
        end = _REFERENCE + HORIZON
        for start in self._walk(starts[-1] if starts else _REFERENCE):
            if start > end or len(starts) >= 2000:
                break
            starts.append(start)
        if len(starts) < 2:
            return timedelta.max
        return min(b - a for a, b in itertools.pairwise(starts))


@functools.lru_cache(maxsize=1024)
def _day_spans(recurrence: Recurrence, day: datetime) -> tuple[Span, ...]:
    """The spans of ``recurrence`` that reach into the UTC day starting at ``day``: a
    claim asks about many slots of the same day, so each day is walked once."""
    return tuple(recurrence.spans(day, day + timedelta(days=1)))


def overlap(first: list[Span], second: list[Span]) -> Span | None:
    """The first stretch of time open in both lists of increasing, disjoint spans."""
    i = j = 0
    while i < len(first) and j < len(second):
        start = max(first[i][0], second[j][0])
        end = min(first[i][1], second[j][1])
        if start < end:
            return start, end
        if first[i][1] <= second[j][1]:
            i += 1
        else:
            j += 1
    return None


# -- the weekly shorthand --------------------------------------------------------------

_WEEKLY = re.compile(
    r"\s*(?P<days>[A-Za-z0-9*,\-]+)\s+(?P<h1>\d{1,2}):(?P<m1>\d{2})"
    r"\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d{2})\s*",
    re.ASCII,
)


def parse_weekly(spec: object) -> tuple[str, timedelta]:
    """``"sun 02:00-04:00"`` (days of the week as cron writes them: ``sun``,
    ``mon-fri``, ``sat,sun``, ``*``; then a start and an end of wall-clock time, the end
    on the next day when it is not after the start; ``24:00`` is midnight) as a cron
    expression for the starts and a duration.

    :raises InvalidWindowError: another shape (:class:`InvalidCronError` for bad days).
    """
    found = _WEEKLY.fullmatch(spec) if isinstance(spec, str) else None
    if found is None:
        raise InvalidWindowError(
            f"must be days and times such as 'sun 02:00-04:00' or 'mon-fri 22:00-06:00', "
            f"got {spec!r:.40}",
            field="weekly",
        )
    h1, m1, h2, m2 = (int(found[name]) for name in ("h1", "m1", "h2", "m2"))
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise InvalidWindowError(
            f"{spec!r:.40} has a time that is not HH:MM on a 24-hour clock", field="weekly"
        )
    expression = f"{m1} {h1} * * {found['days']}"
    parse_cron(expression)
    length = timedelta(hours=h2, minutes=m2) - timedelta(hours=h1, minutes=m1)
    if length <= timedelta(0):
        length += timedelta(days=1)
    return expression, length
