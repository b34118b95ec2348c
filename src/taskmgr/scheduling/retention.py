"""History retention: a built-in job that deletes old finished executions.

It is an ordinary job under the reserved key ``taskmgr.retention``: declared in code
by the service when retention is configured, claimed once per slot by whichever
instance wins it, run by the dispatcher, and recorded in the history like any other.
Its deletes come in small batches, each its own short transaction, with a pause in
between, and a time budget per run: claims and outcome writes of other jobs never
wait behind a long delete (on SQLite, where one writer holds the whole database, a
batch is the longest they wait). What is left over is deleted at the next slot.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.clock import Clock
from taskmgr.core.definition import build_definition
from taskmgr.core.models import ExecutionStatus, JobDefinition
from taskmgr.core.triggers import Cron, Interval
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.base import Storage

__all__ = [
    "FAILURE_STATUSES",
    "MAX_DAYS",
    "RETENTION_KEY",
    "Retention",
    "RetentionPolicy",
    "delete_in_batches",
]

logger = logging.getLogger("taskmgr.maintenance")

#: The reserved job key and function name of the retention job.
RETENTION_KEY = "taskmgr.retention"
#: Kept for ``failed_days`` instead of ``days``.
FAILURE_STATUSES = (ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.LOST)
OTHER_STATUSES = tuple(s for s in ExecutionStatus if s.is_final and s not in FAILURE_STATUSES)
MAX_DAYS = 36_500
DEFAULT_RETENTION_CRON = "7 * * * *"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: float
    failed_days: float
    batch_size: int = 500
    #: Crontab of the retention job (default: hourly), or None for ``every``.
    cron: str | None = DEFAULT_RETENTION_CRON
    every: float | None = None
    #: Longest a run keeps deleting before leaving the rest to the next slot.
    max_seconds: float = 60.0
    #: Pause between two batches, so other writers get the database in between.
    pause: float = 0.02

    def __post_init__(self) -> None:
        for name in ("days", "failed_days"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 < value <= MAX_DAYS
            ):
                raise InvalidInputError(
                    f"must be a number of days in (0, {MAX_DAYS}], got {value!r}", field=name
                )
        if self.failed_days < self.days:
            raise InvalidInputError("must not be shorter than days", field="failed_days")
        if isinstance(self.batch_size, bool) or not 1 <= self.batch_size <= 10_000:
            raise InvalidInputError("must be an integer in 1-10000", field="batch_size")
        if (self.cron is None) == (self.every is None):
            raise InvalidInputError("give exactly one of cron= and every=", field="schedule")

    def definition(self) -> JobDefinition:
        trigger = Cron(self.cron) if self.cron is not None else Interval(self.every)
        return build_definition(
            key=RETENTION_KEY,
            func=RETENTION_KEY,
            trigger=trigger,
            options={
                "description": "taskmgr: delete finished executions past their retention",
                "kwargs": {
                    "days": self.days,
                    "failed_days": self.failed_days,
                    "batch_size": self.batch_size,
                },
                "max_instances": 1,
                "coalesce": True,
                "misfire_grace_time": None,
            },
        )


class Retention:
    """The retention job's function, bound to a service's storage and clock."""

    def __init__(
        self,
        storage: Callable[[], Storage],
        clock: Clock,
        *,
        max_seconds: float = 60.0,
        pause: float = 0.02,
    ) -> None:
        self._storage = storage
        self.clock = clock
        self.max_seconds = max_seconds
        self.pause = pause

    def __call__(self, days: float, failed_days: float, batch_size: int) -> dict[str, Any]:
        storage = self._storage()
        now = self.clock.now()
        deadline = time.monotonic() + self.max_seconds
        deleted = {"deleted": 0, "deleted_failures": 0, "complete": True}
        for statuses, cutoff, field in (
            (OTHER_STATUSES, now - timedelta(days=days), "deleted"),
            (FAILURE_STATUSES, now - timedelta(days=failed_days), "deleted_failures"),
        ):
            count, complete = delete_in_batches(
                storage,
                completed_before=cutoff,
                batch_size=batch_size,
                statuses=statuses,
                deadline=deadline,
                pause=self.pause,
            )
            deleted[field] += count
            if not complete:
                deleted["complete"] = False
                break
        if deleted["deleted"] or deleted["deleted_failures"]:
            logger.info(
                "retention deleted %d execution(s) and %d failure(s)%s",
                deleted["deleted"],
                deleted["deleted_failures"],
                "" if deleted["complete"] else "; the rest at the next run",
                extra={"taskmgr_job_key": RETENTION_KEY},
            )
        return deleted


def delete_in_batches(
    storage: Storage,
    *,
    completed_before: datetime,
    batch_size: int,
    statuses: Sequence[ExecutionStatus] | None = None,
    deadline: float | None = None,
    pause: float = 0.0,
) -> tuple[int, bool]:
    """Delete finished executions completed before the cutoff, ``batch_size`` per
    transaction, until none is left or the ``time.monotonic()`` ``deadline`` passed;
    ``pause`` seconds between batches. Returns how many were deleted and whether that
    was all of them. Pending and running executions are never deleted."""
    total = 0
    while True:
        n = storage.delete_finished_executions(
            completed_before=completed_before, limit=batch_size, statuses=statuses
        )
        total += n
        if n < batch_size:
            return total, True
        if deadline is not None and time.monotonic() >= deadline:
            return total, False
        if pause:
            time.sleep(pause)
