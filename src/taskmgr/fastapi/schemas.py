"""The HTTP models: request bodies and responses of the router's JSON API.

They are separate from :mod:`taskmgr.core.models` on purpose: the wire format is a
public contract (what an OpenAPI client is generated from) and must not change
when an internal model does. Requests only check the *shape* here; the meaning
(cron syntax, time zones, bounds) is checked by the core, by the same validators
as ``@scheduled_job``, so the HTTP API cannot drift from the Python API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Health,
    Instance,
    InstanceStatus,
    Job,
    JobQueue,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.triggers import Cron, Date, Interval, TriggerSpec
from taskmgr.fastapi.describe import describe_trigger

__all__ = [
    "CleanupRequest",
    "CleanupResult",
    "ExecutionOut",
    "ExecutionPageOut",
    "HealthOut",
    "InstanceOut",
    "JobCreate",
    "JobOut",
    "JobPage",
    "JobPatch",
    "JobQueueOut",
    "PreviewOut",
    "SessionOut",
    "TriggerRequest",
]

#: The job key pattern (``taskmgr.core.validation.JOB_KEY_PATTERN``) for OpenAPI clients.
#: A century: more is a mistake, and timedelta cannot hold much more.
MAX_RETENTION_DAYS = 36_500
JOB_KEY_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class _In(BaseModel):
    # Unknown fields are refused: no mass assignment of id, version, timestamps...
    # Strict: "10" is not a number and "yes" is not true (JSON has types; use them).
    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- triggers ----------------------------------------------------------------------


class CronOut(_Out):
    type: Literal["cron"] = "cron"
    expression: str
    timezone: str


class IntervalOut(_Out):
    type: Literal["interval"] = "interval"
    every: float = Field(description="Seconds between runs.")
    start: datetime | None = Field(description="The anchor: runs are at start + k * every.")


class DateOut(_Out):
    type: Literal["date"] = "date"
    at: datetime


class ManualOut(_Out):
    """No schedule: a task, run when deferred."""

    type: Literal["manual"] = "manual"


TriggerOut = Annotated[CronOut | IntervalOut | DateOut | ManualOut, Field(discriminator="type")]


def trigger_out(spec: TriggerSpec) -> CronOut | IntervalOut | DateOut | ManualOut:
    if isinstance(spec, Cron):
        return CronOut(expression=spec.expression, timezone=spec.timezone)
    if isinstance(spec, Interval):
        return IntervalOut(every=spec.every.total_seconds(), start=spec.start)
    if isinstance(spec, Date):
        return DateOut(at=spec.at)
    return ManualOut()


# -- jobs ----------------------------------------------------------------------------


class RetryBackoffIO(_In):
    """Delay before retry n: min(max, base * 2**(n-1)), reduced by up to ``jitter``."""

    base: float = Field(1.0, description="Seconds.")
    max: float = Field(300.0, description="Seconds.")
    jitter: float = Field(0.5, description="A fraction in [0, 1].")


class _ScheduleFields(_In):
    cron: str | None = Field(
        None,
        max_length=256,
        description="A 5-field crontab(5) expression (exactly one of cron, interval, at).",
        examples=["30 2 * * *"],
    )
    interval: float | None = Field(
        None, description="Seconds between runs, 1 to 366 days.", examples=[300]
    )
    at: AwareDatetime | None = Field(
        None, strict=False, description="Run once at this instant (ISO 8601 with offset)."
    )
    timezone: str | None = Field(
        None, max_length=64, description="IANA zone the cron expression is read in (cron only)."
    )
    names: dict[str, str] | None = Field(
        None,
        description="Display names by language code.",
        examples=[{"en": "Nightly report", "de": "Nächtlicher Bericht"}],
    )
    description: str | None = Field(None, max_length=2000)
    kwargs: dict[str, Any] | None = Field(
        None, description="JSON keyword arguments for the function (at most 64 KiB, depth 32)."
    )
    max_instances: int | None = None
    overlap_policy: OverlapPolicy | None = None
    concurrency_key: str | None = Field(
        None,
        max_length=100,
        description=(
            "Tasks only: the name of an argument; max_instances then bounds the runs per "
            "value of that argument."
        ),
        examples=["customer_id"],
    )
    misfire_grace_time: float | None = Field(
        None, description="Seconds a slot may start late (null: no limit)."
    )
    coalesce: bool | None = None
    max_retries: int | None = None
    retry_backoff: RetryBackoffIO | None = None
    timeout: float | None = Field(None, description="Seconds (null: no timeout).")
    queue: str | None = Field(None, max_length=200)


class JobCreate(_ScheduleFields):
    """A new job for a function the host registered in code. Omitted options take
    the same defaults as ``@scheduled_job``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "key": "reports.nightly",
                    "func": "myapp.jobs.nightly_report",
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Berlin",
                    "kwargs": {"recipients": ["ops@example.com"]},
                    "max_retries": 2,
                }
            ]
        },
    )

    key: str = Field(pattern=JOB_KEY_REGEX, max_length=128, examples=["reports.nightly"])
    func: str = Field(
        max_length=200,
        description="The registered name of the function (never an import path to load).",
        examples=["myapp.jobs.nightly_report"],
    )
    enabled: bool | None = Field(None, description="false creates the job paused.")


class JobPatch(_ScheduleFields):
    """Changes to a job; omitted fields keep their value. A new schedule applies from
    now. ``key``, ``id``, ``version``, timestamps and ``state`` cannot be changed here
    (pause and resume have their own endpoints)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"cron": "0 3 * * *", "max_retries": 3}]}
    )

    func: str | None = Field(None, max_length=200)


class JobOut(_Out):
    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "key": "reports.nightly",
                    "func": "myapp.jobs.nightly_report",
                    "trigger": {"type": "cron", "expression": "30 2 * * *", "timezone": "UTC"},
                    "schedule": "every day at 02:30 (UTC)",
                    "state": "active",
                    "next_run_at": "2026-01-02T02:30:00Z",
                }
            ]
        },
    )

    id: int
    key: str
    func: str
    trigger: TriggerOut
    schedule: str = Field(description="The trigger in words (English).")
    names: dict[str, str]
    description: str | None
    kwargs: dict[str, Any]
    max_instances: int
    overlap_policy: OverlapPolicy
    concurrency_key: str | None = Field(
        description="A task's argument whose value groups its runs under max_instances."
    )
    misfire_grace_time: float | None
    coalesce: bool
    max_retries: int
    retry_backoff: RetryBackoffIO
    timeout: float | None
    queue: str | None
    state: JobState
    source: JobSource
    next_run_at: datetime | None
    last_run_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        data = job.model_dump(exclude={"fingerprint", "trigger", "retry_backoff"})
        return cls(
            **data,
            trigger=trigger_out(job.trigger),
            schedule=describe_trigger(job.trigger),
            retry_backoff=RetryBackoffIO(**job.retry_backoff.model_dump()),
        )


class JobPage(_Out):
    """Jobs ordered by key; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[JobOut]
    next_cursor: str | None = None


class PreviewOut(_Out):
    job_key: str
    fire_times: list[datetime] = Field(description="The next fire times, in UTC.")


# -- executions and instances ------------------------------------------------------------


class TriggerRequest(_In):
    """Run the job now, once. ``kwargs`` are merged over the job's."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"kwargs": {"dry_run": True}}]}
    )

    kwargs: dict[str, Any] | None = None
    force: bool = Field(
        False, description="Run even if the job is paused or its overlap policy refuses."
    )


class DeferRequest(_In):
    """Defer one run with these arguments, now, at ``run_at`` or after ``delay``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"kwargs": {"user_id": 42}, "delay": 60}]},
    )

    kwargs: dict[str, Any] = Field(default_factory=dict)
    run_at: AwareDatetime | None = Field(
        None, strict=False, description="Run at this instant (ISO 8601 with offset)."
    )
    delay: float | None = Field(
        None, strict=False, description="Seconds to wait before running (0 to 366 days)."
    )


class ExecutionOut(_Out):
    id: str
    job_id: int
    job_key: str
    scheduled_for: datetime
    attempt: int
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
        return cls(**execution.model_dump(), lateness_ms=lateness)


class ExecutionPageOut(_Out):
    """Executions newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ExecutionOut]
    next_cursor: str | None = None


class JobQueueOut(_Out):
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


class InstanceOut(_Out):
    id: str
    hostname: str
    pid: int
    mode: str
    status: InstanceStatus
    started_at: datetime
    last_heartbeat: datetime
    heartbeat_age_seconds: float

    @classmethod
    def of(cls, instance: Instance, now: datetime) -> InstanceOut:
        age = max((now - instance.last_heartbeat).total_seconds(), 0.0)
        return cls(**instance.model_dump(), heartbeat_age_seconds=age)


class HealthOut(_Out):
    ok: bool = Field(description="The database answered and nothing is wrong with it.")
    database: bool
    schema_current: bool | None = Field(
        None, description="The database schema is at this version's head (null: unknown)."
    )
    running: bool = Field(description="The service of this process is started.")
    live_instances: int
    oldest_overdue_at: datetime | None
    overdue_seconds: float
    error: str | None

    @classmethod
    def of(cls, health: Health) -> HealthOut:
        # Only the fields this wire format has: Health may grow fields of its own.
        data = {k: v for k, v in health.model_dump().items() if k in cls.model_fields}
        return cls(**data, ok=health.ok)


class CleanupRequest(_In):
    # Bounded here because timedelta(days=...) overflows past ~2.7 million days.
    retention_days: float = Field(
        ge=0,
        le=MAX_RETENTION_DAYS,
        description="Delete finished executions completed more than this many days ago.",
        examples=[30],
    )


class CleanupResult(_Out):
    deleted: int


class SessionOut(_Out):
    """What the caller may do: the dashboard shows actions only when ``can_write``."""

    can_write: bool
