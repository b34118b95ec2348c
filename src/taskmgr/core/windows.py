"""Maintenance windows and exclusion dates: the models, the checks of what they are
given, and the rules the planner and the storages apply with them.

A **maintenance window** covers the whole service or one job, once (``start`` and
``end``) or again and again (a cron expression for its starts, a ``duration`` and a
time zone; see :mod:`taskmgr.core.window_calendar` for what that means on DST
nights). Its ``action`` says what becomes of a slot of a schedule it covers: ``skip``
records the slot ``skipped`` with the window's name as the reason; ``defer`` holds it
until the window closes, when the job's misfire policy decides (run late, coalesce,
or ``missed``), as after an outage. Windows hold slots of schedules only: manual runs,
deferred tasks and retries run as usual (a pause holds those).

The calendar of recurring windows is :mod:`taskmgr.core.window_calendar`; a job's
exclusion dates are :mod:`taskmgr.core.exclusions`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from taskmgr.core.cron import parse_cron
from taskmgr.core.triggers import utc_instant
from taskmgr.core.validation import (
    reraise_validation,
    validate_actor,
    validate_job_key,
    validate_timezone,
)
from taskmgr.core.window_calendar import HORIZON, MAX_OCCURRENCES, Recurrence, Span, overlap
from taskmgr.exceptions import (
    InvalidInputError,
    InvalidWindowError,
    WindowInPastError,
    WindowOverlapError,
)

__all__ = [
    "MAX_WINDOW_NAME",
    "Deferral",
    "MaintenanceWindow",
    "WindowAction",
    "check_new_window",
    "check_no_overlap",
    "deferral",
    "due_after_holds",
    "holding_window",
    "is_deferred",
    "skipping_window",
]

#: Longest window name (the pattern of a job key).
MAX_WINDOW_NAME = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
_MAX_REASON = 500
_DAY = timedelta(days=1)

#: An opening of a ``defer`` window: the job it covers (None: every job), and the real
#: time it is open, ``[start, end)``.
Deferral = tuple[str | None, datetime, datetime]


class WindowAction(StrEnum):
    """What becomes of a slot of a schedule inside a maintenance window."""

    #: Recorded ``skipped``, the reason naming the window.
    SKIP = "skip"
    #: Held until the window closes; then the job's misfire policy decides.
    DEFER = "defer"


def _seconds(value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidWindowError(
            f"must be a number of seconds or a timedelta, got {value!r}", field="duration"
        )
    if value <= 0:
        raise InvalidWindowError(f"must be positive, got {value!r} seconds", field="duration")
    if value > HORIZON.total_seconds():
        raise InvalidWindowError(
            f"must be at most {HORIZON.days} days, got {value!r} seconds", field="duration"
        )
    return float(value)


@functools.lru_cache(maxsize=256)
def _recurrence(cron: str, timezone: str, duration: float) -> Recurrence:
    return Recurrence(cron, timezone, timedelta(seconds=duration))


class MaintenanceWindow(BaseModel):
    """One maintenance window, known by its unique ``name``.

    One-off: ``start`` and ``end`` (aware; open from ``start`` until just before
    ``end``). Recurring: ``cron`` (its starts, in the cron dialect of jobs, read in
    ``timezone``, default UTC) and ``duration`` (seconds, or a timedelta, of wall-clock
    time, at most the time between two starts). ``job_key`` None covers every job.

    :raises InvalidWindowError: both or neither form, ``end`` not after ``start``, a
        duration not positive or longer than the time between two starts.
    :raises InvalidCronError: / :raises InvalidTimezoneError: / :raises
        InvalidDatetimeError: a bad expression, time zone or datetime.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    job_key: str | None = None
    action: WindowAction = WindowAction.SKIP
    start: datetime | None = None
    end: datetime | None = None
    cron: str | None = None
    duration: float | None = None
    timezone: str | None = None
    reason: str | None = None
    #: Who created it (the ``actor`` of the call).
    created_by: str | None = None
    created_at: datetime | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            reraise_validation(exc, error_class=InvalidWindowError)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> str:
        if not isinstance(value, str) or _NAME.fullmatch(value) is None:
            raise InvalidInputError(
                f"{value!r:.40} must be 1-{MAX_WINDOW_NAME} ASCII characters: a letter or "
                "digit, then letters, digits, '.', '_', ':' or '-'",
                field="name",
            )
        return value

    @field_validator("job_key", mode="before")
    @classmethod
    def _job_key(cls, value: object) -> str | None:
        if value is None:
            return None
        try:
            return validate_job_key(value)
        except InvalidInputError as exc:
            raise InvalidInputError(str(exc).removeprefix("key: "), field="job_key") from None

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: object) -> WindowAction:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return WindowAction(value)
        except ValueError:
            raise InvalidWindowError(
                f"must be 'skip' or 'defer', got {value!r:.40}", field="action"
            ) from None

    @field_validator("start", "end", "created_at", mode="before")
    @classmethod
    def _instants(cls, value: object, info: Any) -> datetime | None:
        return None if value is None else utc_instant(value, info.field_name)

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: object) -> str | None:
        return None if value is None else parse_cron(value).expression

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else _seconds(value)

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: object) -> str | None:
        return None if value is None else validate_timezone(value)

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > _MAX_REASON or "\x00" in value:
            raise InvalidInputError(
                f"must be a string of at most {_MAX_REASON} characters without NUL",
                field="reason",
            )
        return value or None

    @field_validator("created_by", mode="before")
    @classmethod
    def _created_by(cls, value: object) -> str | None:
        return validate_actor(value)

    @model_validator(mode="before")
    @classmethod
    def _recurring_in_utc(cls, data: Any) -> Any:
        # a recurring window's clock is UTC unless it names another zone
        if isinstance(data, dict) and data.get("cron") is not None and data.get("timezone") is None:
            data = {**data, "timezone": "UTC"}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> MaintenanceWindow:
        one_off = self.start is not None or self.end is not None
        recurring = self.cron is not None or self.duration is not None
        if one_off and recurring:
            raise InvalidWindowError(
                "is either one-off (start and end) or recurring (cron and duration), not both",
                field="cron" if self.cron is not None else "duration",
            )
        if one_off:
            if self.start is None or self.end is None:
                raise InvalidWindowError(
                    "a one-off window needs both start and end",
                    field="end" if self.end is None else "start",
                )
            if self.end <= self.start:
                raise InvalidWindowError(
                    f"must be after start ({self.start.isoformat()}), got {self.end.isoformat()}",
                    field="end",
                )
            if self.timezone is not None:
                raise InvalidWindowError(
                    "a one-off window's start and end carry their own offset: give no time zone",
                    field="timezone",
                )
            return self
        if self.cron is None or self.duration is None:
            raise InvalidWindowError(
                "needs start and end (one-off) or cron and duration (recurring)",
                field="duration" if self.cron is not None else "start",
            )
        gap = self.recurrence().shortest_gap()
        if timedelta(seconds=self.duration) > gap:
            raise InvalidWindowError(
                f"{self.duration:g} s is longer than the {gap.total_seconds():g} s between "
                f"two starts of {self.cron!r}: its occurrences would overlap",
                field="duration",
            )
        return self

    # -- reading it ---------------------------------------------------------------

    @property
    def recurring(self) -> bool:
        return self.cron is not None

    def recurrence(self) -> Recurrence:
        """The calendar of a recurring window (:class:`ValueError` for a one-off one)."""
        if self.cron is None or self.duration is None:
            raise ValueError(f"window {self.name!r} is one-off")
        return _recurrence(self.cron, self.timezone or "UTC", self.duration)

    def covers(self, job_key: str) -> bool:
        """Whether the window covers the job ``job_key`` (every job when service-wide)."""
        return self.job_key is None or self.job_key == job_key

    def span_at(self, moment: datetime) -> Span | None:
        """The span of real time the window is open around ``moment``, if it is open
        then (``start <= moment < end``)."""
        if self.cron is None:
            assert self.start is not None and self.end is not None
            return (self.start, self.end) if self.start <= moment < self.end else None
        return self.recurrence().containing(moment)

    def is_open(self, moment: datetime) -> bool:
        return self.span_at(moment) is not None

    def spans(self, low: datetime, high: datetime, limit: int = MAX_OCCURRENCES) -> list[Span]:
        """The spans the window is open that reach into ``[low, high)`` (at most
        ``limit``)."""
        if self.cron is None:
            assert self.start is not None and self.end is not None
            return [(self.start, self.end)] if self.start < high and self.end > low else []
        return self.recurrence().spans(low, high, limit)

    def next_span(self, moment: datetime) -> Span | None:
        """The span open at ``moment``, else the next one (of a recurring window: within
        a year)."""
        if self.cron is None:
            assert self.start is not None and self.end is not None
            return (self.start, self.end) if self.end > moment else None
        found = self.spans(moment, moment + HORIZON, limit=1)
        return found[0] if found else None

    def reason_text(self) -> str:
        """The reason a slot it covers is recorded with."""
        return f"in maintenance window {self.name!r}"


# -- the rules of a claim --------------------------------------------------------------


def skipping_window(
    job_key: str, slot: datetime, windows: Iterable[MaintenanceWindow]
) -> MaintenanceWindow | None:
    """The first window with action ``skip`` that covers the job and is open at
    ``slot``: the slot is recorded ``skipped`` with its :meth:`~MaintenanceWindow.reason_text`."""
    for window in windows:
        if window.action is WindowAction.SKIP and window.covers(job_key) and window.is_open(slot):
            return window
    return None


def holding_window(
    job_key: str, slot: datetime, windows: Iterable[MaintenanceWindow], now: datetime
) -> datetime | None:
    """When the slot is held by a ``defer`` window that covers the job, is open at
    ``slot`` and is still open at ``now``: the end of that opening (the job's slots
    from this one on wait until then). None: not held."""
    for window in windows:
        if window.action is not WindowAction.DEFER or not window.covers(job_key):
            continue
        span = window.span_at(slot)
        if span is not None and span[1] > now:
            return span[1]
    return None


def deferral(windows: Iterable[MaintenanceWindow], now: datetime) -> list[Deferral]:
    """The openings of ``defer`` windows at ``now``, for a storage's reads: a job they
    cover whose next slot lies in one (:func:`is_deferred`) is held until it closes,
    and is not read as due meanwhile."""
    found: list[Deferral] = []
    for window in windows:
        if window.action is WindowAction.DEFER and (span := window.span_at(now)) is not None:
            found.append((window.job_key, span[0], span[1]))
    return found


def is_deferred(job_key: str, next_run_at: datetime | None, deferrals: Iterable[Deferral]) -> bool:
    """Whether one of ``deferrals`` (:func:`deferral`) holds the job whose next slot is
    ``next_run_at``: it covers the job and the slot lies in it."""
    return next_run_at is not None and any(
        (key is None or key == job_key) and start <= next_run_at < end
        for key, start, end in deferrals
    )


def due_after_holds(
    job_key: str, next_run_at: datetime, windows: Iterable[MaintenanceWindow]
) -> datetime:
    """When a claim may next find work for a job whose next slot is ``next_run_at``: the
    slot itself, or, when ``defer`` windows covering the job are open at it, the
    instant the last of them closes (a job's window and a service-wide one may both
    hold it: it waits for both; when they are over, that is already due)."""
    due = next_run_at
    while (end := holding_window(job_key, next_run_at, windows, due)) is not None:
        due = end
    return due


# -- the checks of a new window --------------------------------------------------------


def check_new_window(window: MaintenanceWindow, now: datetime) -> MaintenanceWindow:
    """``window`` if it is not over at ``now`` (a one-off one's ``end`` is later).

    :raises WindowInPastError: it is over.
    """
    if window.end is not None and window.end <= now:
        raise WindowInPastError(
            f"{window.end.isoformat()} is not in the future (now is {now.isoformat()}): "
            "the window would never be open"
        )
    return window


def check_no_overlap(
    window: MaintenanceWindow, others: Iterable[MaintenanceWindow], now: datetime
) -> None:
    """Refuse ``window`` if it is open at the same time as another window of the same
    scope (both service-wide, or both on one job) within the next year from ``now``
    (at most :data:`~taskmgr.core.window_calendar.MAX_OCCURRENCES` openings of each).

    :raises WindowOverlapError: naming the other window and the first shared instant.
    """
    mine: list[Span] | None = None
    for other in others:
        if other.name == window.name or other.job_key != window.job_key:
            continue
        if mine is None:
            mine = window.spans(now, now + HORIZON)
        shared = overlap(mine, other.spans(now, now + HORIZON))
        if shared is not None:
            scope = "service-wide" if window.job_key is None else f"of job {window.job_key!r}"
            raise WindowOverlapError(
                f"overlaps the {scope} window {other.name!r} (both open at "
                f"{shared[0].isoformat()}): windows of one scope must not overlap",
                field="name",
            )
