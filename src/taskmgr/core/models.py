"""Public data models: job definitions, stored jobs, executions, instances and their enums.

Models are frozen pydantic models so they can be handed across threads and
serialised to JSON as they are. Storage backends return them; nothing outside
the storage layer ever sees a database row. The enums are in
:mod:`taskmgr.core.enums`, :class:`JobDefinition` and its bounds in
:mod:`taskmgr.core.job_definition`; both are importable from here too.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import Field

from taskmgr.core.enums import (
    SLOT_TRIGGERS,
    ExecutionStatus,
    ExecutionTrigger,
    InstanceStatus,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.job_definition import (
    DEFAULT_MISFIRE_GRACE_TIME,
    DISPATCH_NAME_PATTERN,
    DISPATCH_NAME_REGEX,
    LANGUAGE_TAG_PATTERN,
    LANGUAGE_TAG_REGEX,
    MAX_CONCURRENCY_KEY,
    MAX_CONCURRENCY_VALUE,
    MAX_INSTANCES,
    MAX_LANGUAGE_TAG,
    MAX_NAME,
    MAX_NAMES,
    MAX_RETRIES,
    MAX_SECONDS,
    FrozenModel,
    JobDefinition,
    RetryBackoff,
)
from taskmgr.core.pauses import MAX_REASON, Pause
from taskmgr.core.triggers import TriggerSpec

__all__ = [
    "DEFAULT_MISFIRE_GRACE_TIME",
    "DISPATCH_NAME_PATTERN",
    "DISPATCH_NAME_REGEX",
    "LANGUAGE_TAG_PATTERN",
    "LANGUAGE_TAG_REGEX",
    "MAX_CONCURRENCY_KEY",
    "MAX_CONCURRENCY_VALUE",
    "MAX_INSTANCES",
    "MAX_LANGUAGE_TAG",
    "MAX_NAME",
    "MAX_NAMES",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "SLOT_TRIGGERS",
    "Execution",
    "ExecutionPage",
    "ExecutionStatus",
    "ExecutionTrigger",
    "Health",
    "Instance",
    "InstanceStatus",
    "Job",
    "JobDefinition",
    "JobQueue",
    "JobSource",
    "JobState",
    "OverlapPolicy",
    "RetryBackoff",
    "new_execution_id",
]


def new_execution_id() -> str:
    """A new execution id: a random UUID, so any process can make one without asking."""
    return str(uuid.uuid4())


class Job(FrozenModel):
    """A stored job."""

    id: int
    key: str
    func: str
    trigger: TriggerSpec
    names: dict[str, str]
    description: str | None
    kwargs: dict[str, Any]
    max_instances: int
    overlap_policy: OverlapPolicy
    #: The argument whose value groups the runs of a task (see ``JobDefinition``).
    concurrency_key: str | None
    misfire_grace_time: float | None
    coalesce: bool
    max_retries: int
    retry_backoff: RetryBackoff
    timeout: float | None
    queue: str | None
    #: How long the job's finished executions are kept, in seconds (None: globally).
    retention: float | None = None
    #: The name of the dispatcher that runs it (None: the service's default).
    dispatch: str | None = None
    #: The alert thresholds of its own (None: the service's; see ``JobDefinition``).
    alert_late_after: float | None = None
    alert_failures: int | None = None
    alert_max_runtime: float | None = None
    alert_no_success_within: float | None = None
    #: Dates on which its slots are skipped, in its trigger's time zone (sorted).
    exclude_dates: tuple[date, ...] = ()
    state: JobState
    source: JobSource
    fingerprint: str | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
    #: While the job is paused, who paused it, why, since when and until when (it
    #: resumes by itself then; None: until somebody resumes it); all None otherwise.
    paused_by: str | None = Field(default=None, max_length=255)
    paused_reason: str | None = Field(default=None, max_length=MAX_REASON)
    paused_at: datetime | None = None
    paused_until: datetime | None = None


class Execution(FrozenModel):
    """One attempt to run a job: a slot of its schedule, a manual run or a deferred
    task. The attempts of one run (the first and its retries) share a ``chain_id``."""

    id: str
    job_id: int
    job_key: str
    #: The slot of a scheduled run; when a manual run or a deferred task was asked for.
    scheduled_for: datetime
    attempt: int
    #: The id of the run's first attempt, shared by its retries.
    chain_id: str
    trigger: ExecutionTrigger
    status: ExecutionStatus
    #: When a ``pending`` execution may start (retries: after their backoff).
    due_at: datetime
    #: A pending execution that waits until the job has fewer than ``max_instances`` runs.
    queued: bool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: For a task with a ``concurrency_key``: the value of that argument, as canonical
    #: JSON, fixed when the run is written (the group it counts in); else None.
    concurrency_value: str | None = Field(default=None, max_length=MAX_CONCURRENCY_VALUE)
    owner: str | None = None
    actor: str | None = None
    created_at: datetime
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    result_summary: Any = None
    celery_task_id: str | None = None
    #: The caller's key that made a deferred run unique for its job (first attempt only).
    idempotency_key: str | None = None
    #: The W3C trace context (``traceparent``, ``tracestate``) of the span that asked
    #: for this run (a defer, a manual run), kept by its retries: its dispatch span is
    #: that span's child. None for a slot of a schedule, or without tracing.
    trace_context: dict[str, str] | None = None


class Instance(FrozenModel):
    """One running ``SchedulerService``."""

    id: str
    hostname: str
    pid: int
    mode: str
    status: InstanceStatus
    started_at: datetime
    last_heartbeat: datetime


class JobQueue(FrozenModel):
    """One job's work not yet ended: its ``pending`` and ``running`` executions, as
    read at one instant ``now``."""

    job_id: int
    job_key: str
    #: Pending executions, due or not (a run deferred to later, a retry in backoff).
    pending: int
    #: Those of the pending executions whose ``due_at`` has come: the queue's depth.
    due: int
    running: int
    #: The earliest ``due_at`` of the due pending executions (None: none is due).
    oldest_due_at: datetime | None = None


class ExecutionPage(FrozenModel):
    """One page of executions, newest first; pass ``next_cursor`` to get the next."""

    items: list[Execution]
    next_cursor: str | None = None


class Health(FrozenModel):
    """What a readiness probe or an operator needs to know at a glance."""

    #: The database answered.
    database: bool
    #: This process runs a started service (it fires jobs).
    running: bool
    #: Instances whose heartbeat is fresh (status ``running``).
    live_instances: int
    #: The database schema is at this version's head (None: the backend has none).
    schema_current: bool | None = None
    #: The earliest due time of work not yet claimed, if any is overdue.
    oldest_overdue_at: datetime | None = None
    #: How late that work is, in seconds (0 when nothing is overdue).
    overdue_seconds: float = 0.0
    #: Why the database is not healthy, when it is not.
    error: str | None = None
    #: The pauses of queues and of the whole service in effect (who, why, until when).
    pauses: list[Pause] = Field(default_factory=list)
    #: Incidents of the alert rules still open (counted up to 1000).
    open_incidents: int = 0

    @property
    def ok(self) -> bool:
        return self.database and self.error is None and self.schema_current is not False
