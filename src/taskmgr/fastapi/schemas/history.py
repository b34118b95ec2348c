"""The HTTP models of the history: executions, their pages, each job's newest runs,
the queues of work not yet ended, and what failed across jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from taskmgr.core.failures import FailureGroup
from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger, JobQueue
from taskmgr.fastapi.schemas.common import OutModel

__all__ = [
    "ExecutionOut",
    "ExecutionPageOut",
    "FailureGroupOut",
    "FailuresOut",
    "JobQueueOut",
    "JobRunsOut",
]


class ExecutionOut(OutModel):
    id: str
    job_id: int
    job_key: str
    scheduled_for: datetime
    attempt: int = Field(
        description=(
            "1 for a run's first attempt; n for its (n-1)th retry: the n-1 attempts "
            "before it in its chain failed, timed out or were lost."
        )
    )
    trigger: ExecutionTrigger
    status: ExecutionStatus
    due_at: datetime
    queued: bool
    kwargs: dict[str, Any]
    owner: str | None
    actor: str | None
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    lateness_ms: int | None = Field(description="started_at - scheduled_for, in milliseconds.")
    error_type: str | None
    error_message: str | None
    traceback: str | None
    result_summary: Any
    celery_task_id: str | None
    chain_id: str = Field(description="The id of the run's first attempt, shared by retries.")
    idempotency_key: str | None = Field(
        description="The key that made a deferred run unique for its task, if any."
    )
    concurrency_value: str | None = Field(
        description="The value of its task's concurrency_key argument, as JSON, if any."
    )

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        lateness = None
        if execution.started_at is not None:
            late = execution.started_at - execution.scheduled_for
            lateness = round(late.total_seconds() * 1000)
        # the trace context is for the dispatchers' spans, not for readers of the API
        data = execution.model_dump(exclude={"trace_context"})
        return cls(**data, lateness_ms=lateness)


class ExecutionPageOut(OutModel):
    """Executions newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ExecutionOut]
    next_cursor: str | None = None


class JobRunsOut(OutModel):
    """A job's newest executions, newest first (empty: none, or no such job)."""

    job_key: str
    items: list[ExecutionOut]


class JobQueueOut(OutModel):
    """One job's executions that have not ended: waiting (pending) and running."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "job_id": 3,
                    "job_key": "emails.welcome",
                    "pending": 12,
                    "due": 10,
                    "running": 4,
                    "oldest_due_at": "2026-01-02T09:59:30Z",
                    "oldest_due_age_seconds": 30.0,
                }
            ]
        },
    )

    job_id: int
    job_key: str
    pending: int = Field(
        description="Pending executions, due or not (deferred to later, retries in backoff)."
    )
    due: int = Field(description="Pending executions whose due time has come: the queue depth.")
    running: int = Field(description="Executions running now, on any instance.")
    oldest_due_at: datetime | None = Field(
        description="The earliest due time of the due pending executions (null: none is due)."
    )
    oldest_due_age_seconds: float | None = Field(
        description="How long the oldest due pending execution has waited, in seconds."
    )

    @classmethod
    def of(cls, queue: JobQueue, now: datetime) -> JobQueueOut:
        age = None
        if queue.oldest_due_at is not None:
            age = max((now - queue.oldest_due_at).total_seconds(), 0.0)
        return cls(**queue.model_dump(), oldest_due_age_seconds=age)


class FailureGroupOut(OutModel):
    """The failed attempts of one job with one status and error type."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "job_key": "reports.nightly",
                    "status": "failed",
                    "error_type": "builtins.ConnectionError",
                    "count": 4,
                    "runs": 2,
                    "first_seen": "2026-01-02T02:30:01Z",
                    "last_seen": "2026-01-03T02:30:04Z",
                    "last_execution_id": "3f1c9a2e-5d8b-4c1a-9e7f-2b6d4a8c0e13",
                    "last_message": "service unavailable",
                }
            ]
        },
    )

    job_key: str
    status: ExecutionStatus = Field(description="failed, timeout or lost.")
    error_type: str | None = Field(
        description="The exception's module.QualName (null: none recorded, e.g. lost)."
    )
    count: int = Field(description="How many attempts failed so.")
    runs: int = Field(description="How many runs they belong to (a run and its retries: one).")
    first_seen: datetime = Field(description="The earliest completion of these attempts.")
    last_seen: datetime = Field(description="The latest completion of these attempts.")
    last_execution_id: str = Field(description="The latest of these attempts.")
    last_message: str | None = Field(description="Its error message.")

    @classmethod
    def of(cls, group: FailureGroup) -> FailureGroupOut:
        return cls(**group.model_dump())


class FailuresOut(OutModel):
    """Failure groups, the most recently seen first."""

    items: list[FailureGroupOut]
    truncated: bool = Field(description="More groups matched than the limit returned.")
