"""Backfills: the slots a past range of a job's schedule holds, and the runs that fill
them. Pure functions over the job and the range; the storage writes the runs
(``Storage.add_backfill``) with the job's row locked, leaving out the slots the job
already holds and those its schedule records itself."""

from __future__ import annotations

from datetime import datetime, timedelta

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, Job, new_execution_id
from taskmgr.core.triggers import TriggerSpec
from taskmgr.exceptions import BackfillTooLargeError
from taskmgr.storage.records import NewExecution

__all__ = ["backfill_runs", "slots_between"]

_TICK = timedelta(microseconds=1)


def slots_between(
    trigger: TriggerSpec, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """The fire times of ``trigger`` in ``[start, end]`` (both included), in order.

    :raises BackfillTooLargeError: there are more than ``limit`` of them (found without
        computing more than ``limit + 1``).
    """
    slots: list[datetime] = []
    after = start - _TICK
    step = 16
    while True:
        batch = trigger.next_fire_times(after, min(step, limit + 1 - len(slots)))
        step = min(1024, step * 4)
        for fire in batch:
            if fire > end:
                return slots
            slots.append(fire)
        if len(slots) > limit:
            raise BackfillTooLargeError(
                f"the range {start.isoformat()} to {end.isoformat()} holds more than "
                f"{limit} slots of the schedule; backfill a shorter range, or raise max_runs"
            )
        if not batch:
            return slots
        after = slots[-1]


def backfill_runs(
    job: Job, slots: list[datetime], *, now: datetime, actor: str | None
) -> list[NewExecution]:
    """One pending run per slot: trigger ``backfill``, queued (it starts only while the
    job has fewer than ``max_instances`` active runs, whatever its overlap policy: a
    backfill never floods), oldest slot first, with the job's arguments."""
    return [
        NewExecution(
            id=new_execution_id(),
            job_id=job.id,
            job_key=job.key,
            scheduled_for=slot,
            attempt=1,
            trigger=ExecutionTrigger.BACKFILL,
            status=ExecutionStatus.PENDING,
            due_at=slot,
            created_at=now,
            kwargs=job.kwargs,
            queued=True,
            actor=actor,
        )
        for slot in slots
    ]
