"""What keeps a job from running on purpose, as the ``late`` and ``no_success`` alert
rules discount it (``docs/alerting-and-maintenance.md``, "Windows, exclusion dates and
pauses"):

* a slot of its schedule inside an opening of a ``defer`` window that covers the job is
  due when that window closes (the last of the windows holding it): its lateness counts
  from then;
* once a pause of its queue or of the service has ended, its lateness and its window of
  no success count from that end at the earliest (its own pause's end, a resume, is a
  change of the job, which the rules count already);
* its window of no success counts only the time it was allowed to run: the time inside
  the openings of the windows that cover it (``skip`` or ``defer``) and on its
  exclusion dates (whole days, in its trigger's time zone) is left out.

While a pause holds the job, neither rule judges it (see :mod:`taskmgr.core.alerts`).
Pure functions of what they are given: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import functools
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from taskmgr.core.enums import PauseScope
from taskmgr.core.window_calendar import HORIZON, Span, first_instant
from taskmgr.core.windows import MaintenanceWindow, due_after_holds

__all__ = [
    "Releases",
    "late_from",
    "no_success_deadline",
    "releases",
]

#: The most time left out of one window of no success: past it the rule is not looked
#: at further (windows that hold a job that long hold it nearly always).
_MOST_HELD = HORIZON
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Releases:
    """When the pauses of the service and of each queue last ended."""

    service: datetime | None = None
    queues: Mapping[str, datetime] = field(default_factory=dict)

    def of(self, queue: str | None) -> datetime | None:
        """The last end of a pause that held a job of ``queue``: the service's or its
        queue's, whichever is later (None: none is known)."""
        found = [self.service, None if queue is None else self.queues.get(queue)]
        return max((moment for moment in found if moment is not None), default=None)


def releases(ends: Iterable[tuple[PauseScope, str | None, datetime]]) -> Releases:
    """:class:`Releases` from the ends of pauses: ``(scope, queue name, when)``."""
    service: datetime | None = None
    queues: dict[str, datetime] = {}
    for scope, name, moment in ends:
        if scope is PauseScope.SERVICE:
            service = moment if service is None else max(service, moment)
        elif scope is PauseScope.QUEUE and name:
            queues[name] = max(queues.get(name, moment), moment)
    return Releases(service, queues)


def late_from(
    job_key: str,
    due: datetime,
    *,
    slot: bool,
    windows: Sequence[MaintenanceWindow] = (),
    released: datetime | None = None,
) -> datetime:
    """When the lateness of something of ``job_key`` due at ``due`` counts from: a slot
    of its schedule (``slot``) that ``defer`` windows hold is due when they close; and
    nothing is due before the end of the pause that held the job (``released``)."""
    start = due_after_holds(job_key, due, windows) if slot and windows else due
    return start if released is None or released <= start else released


def no_success_deadline(
    job_key: str,
    start: datetime,
    threshold: float,
    *,
    windows: Sequence[MaintenanceWindow] = (),
    exclude_dates: Sequence[date] = (),
    timezone: str = "UTC",
) -> datetime | None:
    """The instant at which ``threshold`` seconds of time the job was allowed to run have
    passed since ``start``: the time inside the openings of ``windows`` that cover the
    job and on its ``exclude_dates`` (read in ``timezone``) does not count. None when
    more than a year of such time would have to be left out (held nearly always)."""
    covering = tuple(window for window in windows if window.covers(job_key))
    if not covering and not exclude_dates:
        return start + timedelta(seconds=threshold)
    return _deadline(start, threshold, covering, tuple(sorted(exclude_dates)), timezone)


@functools.lru_cache(maxsize=1024)
def _deadline(
    start: datetime,
    threshold: float,
    windows: tuple[MaintenanceWindow, ...],
    exclude_dates: tuple[date, ...],
    timezone: str,
) -> datetime | None:
    # Walk from start, stretch by stretch (each twice as long as the last), across the
    # free time between holds, until ``threshold`` of it is used up. Depends on neither
    # the clock nor the evaluation: the same answer every round (hence the cache).
    left = timedelta(seconds=threshold)
    cursor = start
    low, high = start, start + left
    limit = start + left + _MOST_HELD
    while True:
        for opened, closed in _holds(low, high, windows, exclude_dates, timezone):
            opened = max(opened, cursor)
            if opened >= closed:
                continue  # passed already
            if opened - cursor >= left:
                return cursor + left
            left -= opened - cursor
            cursor = closed
        if cursor + left <= high:
            return cursor + left
        if high >= limit:
            return None
        low, high = high, min(limit, max(cursor + left, high + (high - start)))


def _holds(
    low: datetime,
    high: datetime,
    windows: tuple[MaintenanceWindow, ...],
    exclude_dates: tuple[date, ...],
    timezone: str,
) -> list[Span]:
    """The stretches that reach into ``[low, high)`` during which the job is held: the
    windows' openings and its excluded days, in order, overlapping ones merged."""
    spans = [span for window in windows for span in window.spans(low, high, sys.maxsize)]
    spans += _excluded_days(low, high, exclude_dates, timezone)
    spans.sort()
    merged: list[Span] = []
    for opened, closed in spans:
        if merged and opened <= merged[-1][1]:
            if closed > merged[-1][1]:
                merged[-1] = (merged[-1][0], closed)
        else:
            merged.append((opened, closed))
    return merged


def _excluded_days(
    low: datetime, high: datetime, exclude_dates: tuple[date, ...], timezone: str
) -> Iterator[Span]:
    """The excluded days that reach into ``[low, high)``, as real time: from the first
    instant the zone's clock reads the day's midnight to the first it reads the next."""
    if not exclude_dates:
        return
    zone = ZoneInfo(timezone)
    first = low.astimezone(zone).date() - _DAY  # a day's span may start before ``low``
    last = high.astimezone(zone).date()
    for day in exclude_dates[bisect.bisect_left(exclude_dates, first) :]:
        if day > last:
            return
        midnight = datetime(day.year, day.month, day.day)
        opened, closed = first_instant(midnight, zone), first_instant(midnight + _DAY, zone)
        if opened < high and closed > low:
            yield opened, closed
