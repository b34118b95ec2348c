"""What every backend does alike with pauses and backfills: the checks of a pause
and of a backfill's runs, a job resumed at its ``until``, a pause as an audit entry
shows it, which of a backfill's slots are written. No I/O here; the rules applied
are :mod:`taskmgr.core.rules`'."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import ExecutionStatus, ExecutionTrigger, JobState, PauseScope
from taskmgr.core.models import Execution, Job
from taskmgr.core.pauses import Pause, check_queue_name, check_reason
from taskmgr.core.rules import backfill_frontier, resume_slot_at
from taskmgr.core.validation import validate_actor
from taskmgr.exceptions import ConflictError, InvalidInputError
from taskmgr.storage.common import apply_job_changes, execution_from_new
from taskmgr.storage.inputs import member, utc
from taskmgr.storage.pause_store import AUTO_RESUME_ACTOR
from taskmgr.storage.records import AuditRecord, NewExecution

__all__ = [
    "SERVICE_NAME",
    "BackfillPlan",
    "auto_resume",
    "backfill_plan",
    "checked_backfill",
    "checked_pause",
    "job_pause",
    "pause_details",
    "resumed_at_until",
    "stored_name",
]

#: The ``name`` of the service's pause row (a primary key column cannot be NULL).
SERVICE_NAME = ""


def stored_name(scope: PauseScope, name: str | None) -> str:
    """The ``name`` a pause is stored under: the queue's, or '' for the service."""
    if scope is PauseScope.SERVICE:
        if name is not None:
            raise InvalidInputError("the service's pause has no name", field="name")
        return SERVICE_NAME
    if scope is PauseScope.QUEUE:
        return check_queue_name(name)
    raise InvalidInputError(
        "a job's pause is on its row (update_job): only queue and service pauses are stored",
        field="scope",
    )


def checked_pause(pause: Pause) -> Pause:
    """``pause`` if it can be stored: a queue's (named) or the service's (no name), its
    reason and who within bounds, its datetimes aware (in UTC)."""
    if not isinstance(pause, Pause):
        raise InvalidInputError(f"must be a Pause, got {type(pause).__name__}", field="pause")
    scope = member(PauseScope, pause.scope, "scope")
    stored_name(scope, pause.name)
    if pause.paused_at is None:
        raise InvalidInputError("a stored pause says when it began", field="paused_at")
    return pause.model_copy(
        update={
            "scope": scope,
            "paused_by": validate_actor(pause.paused_by),
            "reason": check_reason(pause.reason),
            "paused_at": utc(pause.paused_at, "paused_at"),
            "until": None if pause.until is None else utc(pause.until, "until"),
        }
    )


def pause_details(pause: Pause) -> dict[str, Any]:
    """A pause as its audit entry shows it (JSON)."""
    return pause.model_dump(mode="json")


def auto_resume(now: datetime, pause: Pause) -> AuditRecord:
    """The audit record of a pause that ended by itself at its ``until``: actor
    ``taskmgr``, source ``schedule``; ``details["pause"]`` is the pause that ended."""
    return AuditRecord(
        action=AuditAction.RESUME,
        source=AuditSource.SCHEDULE,
        at=now,
        actor=AUTO_RESUME_ACTOR,
        details={"pause": pause_details(pause)},
    )


def job_pause(job: Job) -> Pause:
    """The pause on a job's row."""
    return Pause(
        scope=PauseScope.JOB,
        name=job.key,
        paused_by=job.paused_by,
        reason=job.paused_reason,
        paused_at=job.paused_at,
        until=job.paused_until,
    )


def resumed_at_until(job: Job, now: datetime) -> Job:
    """A paused ``job`` whose ``until`` has come, resumed (written at ``now``): active,
    next slot the first at or after its ``until``, its pause fields cleared."""
    assert job.state is JobState.PAUSED and job.paused_until is not None
    changes = {"state": JobState.ACTIVE, "next_run_at": resume_slot_at(job, job.paused_until)}
    return apply_job_changes(job, changes, now=now)


def checked_backfill(news: Sequence[NewExecution], job: Job) -> list[Execution]:
    """The stored form of a backfill's runs: each a first attempt, ``pending``, trigger
    ``backfill``, of ``job``; no two at one slot."""
    if not isinstance(job, Job):
        raise InvalidInputError(f"must be a Job, got {type(job).__name__}", field="job")
    executions = [execution_from_new(new) for new in news]
    for execution in executions:
        if (
            execution.job_id != job.id
            or execution.job_key != job.key
            or execution.trigger is not ExecutionTrigger.BACKFILL
            or execution.status is not ExecutionStatus.PENDING
            or execution.attempt != 1
        ):
            raise InvalidInputError(
                f"a backfill's runs are pending first attempts of job {job.key!r} with "
                f"trigger 'backfill', got {execution.id!r}",
                field="news",
            )
    slots = [e.scheduled_for for e in executions]
    if len(set(slots)) != len(slots):
        raise ConflictError("two runs of one backfill share a slot")
    return executions


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """Which of a backfill's runs are written, decided on the locked job row."""

    insert: list[Execution]
    existing: int
    scheduled: int


def backfill_plan(
    executions: Sequence[Execution], job: Job, held: Collection[datetime], now: datetime
) -> BackfillPlan:
    """Leave out the runs at or after the job's backfill frontier (the schedule's own)
    and those whose slot the job already holds (``held``: its stored slots among them)."""
    frontier = backfill_frontier(job, now)
    insert: list[Execution] = []
    existing = scheduled = 0
    for execution in executions:
        if frontier is not None and execution.scheduled_for >= frontier:
            scheduled += 1
        elif execution.scheduled_for in held:
            existing += 1
        else:
            insert.append(execution)
    return BackfillPlan(insert=insert, existing=existing, scheduled=scheduled)
