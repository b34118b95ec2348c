"""Pauses and backfills: the models an operator reads back, and the checks of what
they are given.

A **pause** stops a job, the jobs of a queue, or the whole service, and says who
paused it, why, since when and until when: at ``until`` it ends by itself. A job's
pause is on its row (its ``state`` is paused); a queue's or the service's is a row of
its own. A **backfill** creates the slots of a past range of a job's schedule as runs
to start now.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from taskmgr.core.enums import PauseScope
from taskmgr.core.validation import ensure_aware
from taskmgr.exceptions import InvalidDatetimeError, InvalidInputError, PauseUntilPastError

__all__ = [
    "MAX_BACKFILL_RUNS",
    "MAX_QUEUE_NAME",
    "MAX_REASON",
    "BackfillResult",
    "Pause",
    "PauseScope",
    "check_queue_name",
    "check_reason",
    "check_until",
]

#: Longest reason a pause keeps.
MAX_REASON = 500
#: Longest queue name (a job's ``queue``).
MAX_QUEUE_NAME = 200
#: Most slots one backfill may create (the largest ``max_runs``).
MAX_BACKFILL_RUNS = 100_000

_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class Pause(BaseModel):
    """One pause in effect: of a job (``name`` is its key), of a queue (``name`` is the
    queue) or of the whole service (``name`` None)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: PauseScope
    name: str | None
    #: Who paused it (the ``actor`` of the call; None: nobody was named).
    paused_by: str | None = None
    reason: str | None = None
    #: When it was paused (None: a job paused before pauses were recorded, or created
    #: paused by its code).
    paused_at: datetime | None = None
    #: When it ends by itself (None: when somebody resumes it).
    until: datetime | None = None

    def describe(self) -> str:
        """The pause in words: ``queue 'reports' paused by alice: deploy freeze``."""
        what = {
            PauseScope.JOB: f"job {self.name!r}",
            PauseScope.QUEUE: f"queue {self.name!r}",
            PauseScope.SERVICE: "the service",
        }[self.scope]
        text = f"{what} paused"
        if self.paused_by:
            text += f" by {self.paused_by}"
        if self.reason:
            text += f": {self.reason}"
        if self.until is not None:
            text += f" (until {self.until.isoformat()})"
        return text


class BackfillResult(BaseModel):
    """What a backfill did with the slots of its range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_key: str
    start: datetime
    end: datetime
    #: The slots of the job's schedule in ``[start, end]``.
    slots: int
    #: Those created now as pending runs (trigger ``backfill``).
    created: int
    #: Those that already had a row (run, missed, skipped, backfilled before): not
    #: created again.
    existing: int
    #: Those at or after the job's next slot, which the schedule itself records.
    scheduled: int
    #: The first and last slot created (None when none was).
    first_created: datetime | None = None
    last_created: datetime | None = None


def check_reason(reason: object) -> str | None:
    """``reason`` if it is None or a string of at most :data:`MAX_REASON` characters
    without NUL (an empty one is None)."""
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON or "\x00" in reason:
        raise InvalidInputError(
            f"must be a string of at most {MAX_REASON} characters without NUL", field="reason"
        )
    return reason or None


def check_queue_name(name: object) -> str:
    """``name`` if it can name a queue: 1-200 characters without NUL."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_QUEUE_NAME or "\x00" in name:
        raise InvalidInputError(
            f"must be a queue name of 1-{MAX_QUEUE_NAME} characters without NUL", field="queue"
        )
    return name


def check_until(until: object, now: datetime) -> datetime | None:
    """``until`` in UTC if it is None or an aware datetime after ``now`` (and before the
    year 9999).

    :raises InvalidDatetimeError: not an aware datetime, or out of range.
    :raises PauseUntilPastError: not after ``now``.
    """
    if until is None:
        return None
    moment = ensure_aware(until, "until")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = _LATEST
    if moment >= _LATEST:
        raise InvalidDatetimeError(
            f"{until} out of range: the year must be 1970-9998 (UTC)", field="until"
        )
    if moment <= now:
        raise PauseUntilPastError(
            f"{moment.isoformat()} is not in the future (now is {now.isoformat()}): a "
            "pause ends after it begins; resume now instead"
        )
    return moment
