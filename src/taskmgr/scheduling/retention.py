"""History retention: a built-in job that deletes old finished executions, old audit
entries and old resolved incidents.

It is an ordinary job under the reserved key ``taskmgr.retention``: declared in code
by the service when retention is configured, claimed once per slot by whichever
instance wins it, run by the dispatcher, and recorded in the history like any other.
Its deletes come in small batches, each its own short transaction, with a pause in
between, and a time budget per run: claims and outcome writes of other jobs never
wait behind a long delete (on SQLite, where one writer holds the whole database, a
batch is the longest they wait). What is left over is deleted at the next slot.

A job with a ``retention`` of its own keeps its executions that long instead of the
global ``days``/``failed_days``; audit entries are kept ``audit_days``, and incidents
``incident_days`` after they resolved (an open one is never deleted). A run that
removed anything records how much in the audit log (action ``retention``, source
``code``), after its batches.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.clock import Clock
from taskmgr.core.definition import build_definition
from taskmgr.core.models import ExecutionStatus, JobDefinition
from taskmgr.core.triggers import Cron, Interval
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.base import AuditRecord, Storage

__all__ = [
    "DEFAULT_AUDIT_DAYS",
    "DEFAULT_INCIDENT_DAYS",
    "FAILURE_STATUSES",
    "MAX_DAYS",
    "RETENTION_KEY",
    "Retention",
    "RetentionPolicy",
    "delete_in_batches",
    "in_batches",
]

logger = logging.getLogger("taskmgr.maintenance")

#: The reserved job key and function name of the retention job.
RETENTION_KEY = "taskmgr.retention"
#: Kept for ``failed_days`` instead of ``days``.
FAILURE_STATUSES = (ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.LOST)
OTHER_STATUSES = tuple(s for s in ExecutionStatus if s.is_final and s not in FAILURE_STATUSES)
MAX_DAYS = 36_500
DEFAULT_RETENTION_CRON = "7 * * * *"
#: Days an audit entry is kept unless the settings say otherwise.
DEFAULT_AUDIT_DAYS = 400.0
#: Days a resolved incident is kept unless the settings say otherwise.
DEFAULT_INCIDENT_DAYS = 400.0


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
    #: Days audit entries are kept.
    audit_days: float = DEFAULT_AUDIT_DAYS
    #: Days resolved incidents are kept (counted from their resolution).
    incident_days: float = DEFAULT_INCIDENT_DAYS

    def __post_init__(self) -> None:
        for name in ("days", "failed_days", "audit_days", "incident_days"):
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
                    "audit_days": self.audit_days,
                    "incident_days": self.incident_days,
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

    def __call__(
        self,
        days: float,
        failed_days: float,
        batch_size: int,
        audit_days: float = DEFAULT_AUDIT_DAYS,
        incident_days: float = DEFAULT_INCIDENT_DAYS,
    ) -> dict[str, Any]:
        storage = self._storage()
        now = self.clock.now()
        deadline = time.monotonic() + self.max_seconds

        def executions(**scope: Any) -> tuple[int, bool]:
            return delete_in_batches(
                storage, batch_size=batch_size, deadline=deadline, pause=self.pause, **scope
            )

        def own_retention() -> tuple[int, bool]:
            total = 0
            for job in storage.list_jobs(with_retention=True):
                assert job.retention is not None
                cutoff = now - timedelta(seconds=job.retention)
                count, complete = executions(completed_before=cutoff, job_id=job.id)
                total += count
                if not complete:
                    return total, False
            return total, True

        def old_audit() -> tuple[int, bool]:
            cutoff = now - timedelta(days=audit_days)
            delete = functools.partial(storage.delete_audit, before=cutoff)
            return in_batches(delete, batch_size, deadline, self.pause)

        def old_incidents() -> tuple[int, bool]:
            cutoff = now - timedelta(days=incident_days)
            delete = functools.partial(storage.delete_incidents, resolved_before=cutoff)
            return in_batches(delete, batch_size, deadline, self.pause)

        steps: dict[str, Callable[[], tuple[int, bool]]] = {
            "deleted_by_job": own_retention,
            "deleted": lambda: executions(
                completed_before=now - timedelta(days=days),
                statuses=OTHER_STATUSES,
                default_retention=True,
            ),
            "deleted_failures": lambda: executions(
                completed_before=now - timedelta(days=failed_days),
                statuses=FAILURE_STATUSES,
                default_retention=True,
            ),
            "deleted_audit": old_audit,
            "deleted_incidents": old_incidents,
        }
        deleted: dict[str, Any] = dict.fromkeys(steps, 0)
        deleted["complete"] = True
        for field, step in steps.items():
            deleted[field], complete = step()
            if not complete:
                deleted["complete"] = False
                break
        if any(deleted[field] for field in steps):
            logger.info(
                "retention deleted %d execution(s), %d failure(s), %d of jobs with a "
                "retention of their own, %d audit entries and %d resolved incidents%s",
                deleted["deleted"],
                deleted["deleted_failures"],
                deleted["deleted_by_job"],
                deleted["deleted_audit"],
                deleted["deleted_incidents"],
                "" if deleted["complete"] else "; the rest at the next run",
                extra={"taskmgr_job_key": RETENTION_KEY},
            )
            # after the batches (each its own transaction): what this run removed
            storage.record_audit(
                AuditRecord(
                    action=AuditAction.RETENTION, source=AuditSource.CODE, at=now, details=deleted
                )
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
    job_id: int | None = None,
    default_retention: bool = False,
) -> tuple[int, bool]:
    """Delete finished executions completed before the cutoff, ``batch_size`` per
    transaction, until none is left or the ``time.monotonic()`` ``deadline`` passed;
    ``pause`` seconds between batches. Returns how many were deleted and whether that
    was all of them. Pending and running executions are never deleted. ``job_id`` and
    ``default_retention`` narrow the deletes (``Storage.delete_finished_executions``)."""
    delete = functools.partial(
        storage.delete_finished_executions,
        completed_before=completed_before,
        statuses=statuses,
        job_id=job_id,
        default_retention=default_retention,
    )
    return in_batches(delete, batch_size, deadline, pause)


def in_batches(
    delete: Callable[..., int], batch_size: int, deadline: float | None, pause: float
) -> tuple[int, bool]:
    """Call ``delete(limit=batch_size)`` until it deletes fewer than that or the
    ``deadline`` passed, ``pause`` seconds between calls. Returns how many were
    deleted and whether that was all of them."""
    total = 0
    while True:
        n = delete(limit=batch_size)
        total += n
        if n < batch_size:
            return total, True
        if deadline is not None and time.monotonic() >= deadline:
            return total, False
        if pause:
            time.sleep(pause)
