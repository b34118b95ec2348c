"""Builders shared by the contract tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobSource,
    JobState,
)
from taskmgr.core.triggers import Interval
from taskmgr.storage.base import (
    AuditRecord,
    ClaimBatch,
    ClaimPlan,
    JobAdvance,
    NewExecution,
    Outcome,
    PendingDecision,
    Storage,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def definition(key: str, **options: Any) -> JobDefinition:
    options.setdefault("func", "tests.contract.work")
    options.setdefault("trigger", Interval(MINUTE))
    return JobDefinition(key=key, **options)


def add_job(
    storage: Storage,
    key: str,
    *,
    next_run_at: datetime | None = T0,
    state: JobState = JobState.ACTIVE,
    source: JobSource = JobSource.CODE,
    now: datetime = T0 - MINUTE,
    audit: AuditRecord | None = None,
    **options: Any,
) -> Job:
    return storage.add_job(
        definition(key, **options),
        source=source,
        state=state,
        next_run_at=next_run_at,
        fingerprint=f"fp-{key}",
        now=now,
        audit=audit,
    )


def new_id() -> str:
    return str(uuid.uuid4())


def new_execution(
    job: Job,
    *,
    scheduled_for: datetime = T0,
    attempt: int = 1,
    status: ExecutionStatus = ExecutionStatus.PENDING,
    trigger: ExecutionTrigger = ExecutionTrigger.MANUAL,
    due_at: datetime | None = None,
    created_at: datetime = T0,
    **fields: Any,
) -> NewExecution:
    return NewExecution(
        id=fields.pop("id", None) or new_id(),
        job_id=job.id,
        job_key=job.key,
        scheduled_for=scheduled_for,
        attempt=attempt,
        trigger=trigger,
        status=status,
        due_at=due_at or scheduled_for,
        created_at=created_at,
        **fields,
    )


def running(job: Job, owner: str, **fields: Any) -> NewExecution:
    fields.setdefault("dispatched_at", fields.get("created_at", T0))
    return new_execution(job, status=ExecutionStatus.RUNNING, owner=owner, **fields)


def advance(
    job: Job,
    *,
    slots: Sequence[datetime] | None = None,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
    expected: datetime | None = None,
    now: datetime = T0,
) -> JobAdvance:
    """Advance ``job`` past its due slot(s), inserting one execution per slot."""
    assert job.next_run_at is not None
    slots = list(slots) if slots is not None else [job.next_run_at]
    rows = [
        NewExecution(
            id=new_id(),
            job_id=job.id,
            job_key=job.key,
            scheduled_for=slot,
            attempt=1,
            trigger=ExecutionTrigger.SCHEDULE,
            status=status,
            due_at=slot,
            created_at=now,
            kwargs=job.kwargs,
            completed_at=None if status is ExecutionStatus.RUNNING else now,
        )
        for slot in slots
    ]
    return JobAdvance(
        job_id=job.id,
        expected_next_run_at=expected or job.next_run_at,
        next_run_at=max(slots) + MINUTE,
        last_run_at=max(slots) if status is ExecutionStatus.RUNNING else None,
        executions=rows,
    )


class Recorder:
    """A planner that records the batches it saw and returns a plan built by ``make``."""

    def __init__(self, make: Callable[[ClaimBatch], ClaimPlan] | None = None) -> None:
        self.batches: list[ClaimBatch] = []
        self.make = make or (lambda batch: ClaimPlan())

    def __call__(self, batch: ClaimBatch) -> ClaimPlan:
        self.batches.append(batch)
        return self.make(batch)

    @property
    def batch(self) -> ClaimBatch:
        assert len(self.batches) == 1
        return self.batches[0]


def fire_all(batch: ClaimBatch) -> ClaimPlan:
    """Run every due job's slot and start every due pending execution."""
    return ClaimPlan(
        advances=[advance(job, now=batch.now) for job in batch.due_jobs],
        pending=[PendingDecision(e.id, ExecutionStatus.RUNNING) for e in batch.due_pending],
    )


def outcome(
    execution: Execution | NewExecution,
    owner: str,
    *,
    status: ExecutionStatus = ExecutionStatus.SUCCESS,
    retry: NewExecution | None = None,
    completed_at: datetime = T0 + timedelta(seconds=2),
    **fields: Any,
) -> Outcome:
    return Outcome(
        execution_id=execution.id,
        owner=owner,
        status=status,
        started_at=T0 + timedelta(seconds=1),
        completed_at=completed_at,
        duration_ms=1000,
        retry=retry,
        **fields,
    )


def instance(
    instance_id: str,
    *,
    last_heartbeat: datetime = T0,
    started_at: datetime = T0 - MINUTE,
    status: InstanceStatus = InstanceStatus.RUNNING,
) -> Instance:
    return Instance(
        id=instance_id,
        hostname="host-1",
        pid=1234,
        mode="embedded",
        status=status,
        started_at=started_at,
        last_heartbeat=last_heartbeat,
    )
