"""The plain values the storage port takes and returns besides the models of
:mod:`taskmgr.core.models`: rows to insert, what a claim reads and writes, outcomes,
history filters and summaries. :mod:`taskmgr.storage.base` re-exports each of them
with the :class:`~taskmgr.storage.base.Storage` methods that use them, whose
docstrings say what every backend does with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.failures import FAILURE_STATUSES
from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger, Job
from taskmgr.core.pauses import Pause
from taskmgr.core.windows import MaintenanceWindow

__all__ = [
    "AuditFilter",
    "AuditRecord",
    "ClaimBatch",
    "ClaimPlan",
    "Claimed",
    "ExecutionFilter",
    "FailureFilter",
    "HistorySummary",
    "JobAdvance",
    "NewExecution",
    "Outcome",
    "PendingDecision",
]


@dataclass(frozen=True, slots=True)
class NewExecution:
    """An execution row to insert. ``id`` is chosen by the caller (a UUID string)."""

    id: str
    job_id: int
    job_key: str
    scheduled_for: datetime
    attempt: int
    trigger: ExecutionTrigger
    status: ExecutionStatus
    due_at: datetime
    created_at: datetime
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queued: bool = False
    owner: str | None = None
    actor: str | None = None
    dispatched_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    #: The id of the run's first attempt (None: this is a first attempt, its own chain).
    chain_id: str | None = None
    idempotency_key: str | None = None
    #: The group of a run of a task with a ``concurrency_key``
    #: (:func:`taskmgr.core.rules.concurrency_value`); None otherwise.
    concurrency_value: str | None = None
    #: The W3C trace context of the span that asked for the run (``Execution.trace_context``).
    trace_context: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class JobAdvance:
    """Move a due job's ``next_run_at`` from ``expected_next_run_at`` to ``next_run_at``
    (compare-and-set) and, only if that wins, insert ``executions``. ``last_run_at``
    None keeps the job's."""

    job_id: int
    expected_next_run_at: datetime
    next_run_at: datetime | None
    last_run_at: datetime | None
    executions: Sequence[NewExecution] = ()


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """Move a ``pending`` execution to ``status`` (``running`` to start it, or a final
    status such as ``cancelled``/``skipped``), only if it is still pending.
    ``error_message`` None keeps the message the execution had; any string, even an
    empty one, replaces it."""

    execution_id: str
    status: ExecutionStatus
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """What the planner sees inside the claim transaction."""

    now: datetime
    #: Active jobs with ``next_run_at <= horizon`` (``now`` without a look-ahead),
    #: earliest first (at most ``limit``).
    due_jobs: Sequence[Job]
    #: Pending executions with ``due_at <= now``, earliest first (at most ``limit``),
    #: but for the queued runs of full groups (see ``active_groups``).
    #:
    #: Rows due at the same instant come in insertion order (jobs: also by id) on the
    #: memory backend and SQLite (the index's order); on PostgreSQL in the order the
    #: index returns them, close to insertion order but not promised. The claim's
    #: statements keep the index's order because sorting ties costs the hot path a
    #: sort, so when more rows tie than ``limit`` takes, which are read first is
    #: promised only on the memory backend and SQLite.
    due_pending: Sequence[Execution]
    #: Every job referenced by ``due_jobs`` or ``due_pending`` that still exists, by id.
    jobs: Mapping[int, Job]
    #: Executions counted against ``max_instances``
    #: (:func:`taskmgr.core.rules.is_active_run`: running, plus pending that are not
    #: queued), per job id in ``jobs``.
    active: Mapping[int, int]
    #: The same count per ``(job id, concurrency_value)``, for the jobs in ``jobs``
    #: that have a ``concurrency_key`` (:func:`taskmgr.core.rules.run_group`); a group
    #: without an active run is absent. Due queued runs of a group already at
    #: ``max_instances`` are left out of ``due_pending`` (they could not start, and
    #: would take the places of other groups' runs under ``limit``); so are those of a
    #: job without a ``concurrency_key`` whose active runs number ``max_instances``.
    active_groups: Mapping[tuple[int, str | None], int] = field(default_factory=dict)
    #: The pauses of queues and of the service in effect at ``now``
    #: (:func:`taskmgr.core.rules.holding_pause` tells which jobs they hold). The due
    #: jobs they hold are in ``due_jobs`` but for one-shot (``Date``) ones, which keep
    #: their slot until the pause ends; the pending runs of held jobs are left out of
    #: ``due_pending`` (they wait).
    pauses: Sequence[Pause] = ()
    #: How far ahead the claim read the due jobs (``now`` plus the claim's
    #: ``lookahead``; None: ``now``). A job in ``due_jobs`` may be due after ``now``,
    #: up to this; everything else (pending runs, pauses, misfires) is judged at ``now``.
    horizon: datetime | None = None
    #: Every stored maintenance window (empty when none is): the planner skips or holds
    #: the slots they cover (:mod:`taskmgr.core.windows`). The jobs a ``defer`` window
    #: open at ``now`` holds (their next slot inside it) are left out of ``due_jobs``.
    windows: Sequence[MaintenanceWindow] = ()


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """What the planner returns: the writes of one claim, applied in this order."""

    advances: Sequence[JobAdvance] = ()
    pending: Sequence[PendingDecision] = ()
    #: Jobs to mark ``orphaned`` (their function is not registered).
    orphan_job_ids: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    """An execution this owner now runs, with its job as it was when claimed."""

    execution: Execution
    job: Job


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of a running execution, written only if ``owner`` still owns it.
    ``status`` is a final status."""

    execution_id: str
    owner: str
    status: ExecutionStatus
    started_at: datetime | None
    completed_at: datetime
    duration_ms: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    result_summary: Any = None
    #: The next attempt, inserted in the same transaction when the outcome is written.
    retry: NewExecution | None = None


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    job_key: str | None = None
    #: Any of these statuses (empty: any status); ``triggers`` likewise.
    statuses: Sequence[ExecutionStatus] = ()
    triggers: Sequence[ExecutionTrigger] = ()
    since: datetime | None = None
    until: datetime | None = None
    #: Only executions whose ``owner`` is this instance id.
    owner: str | None = None
    #: Only the attempts of one run (its first attempt's id).
    chain_id: str | None = None


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Which failed attempts ``Storage.failure_groups`` groups: those of one job (or
    every job), in these statuses, completed between ``since`` and ``until``
    (inclusive)."""

    job_key: str | None = None
    statuses: Sequence[ExecutionStatus] = FAILURE_STATUSES
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class HistorySummary:
    """What the stored history holds, aggregated (see ``Storage.history_summary``)."""

    #: Number of executions per ``(job_key, status)``; absent pairs have none.
    counts: Mapping[tuple[str, ExecutionStatus], int] = field(default_factory=dict)
    #: The latest ``completed_at`` of a successful execution, per job key.
    last_success: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who makes a change, through which door, when: the audit entry a storage writes
    in the same transaction as the change it is given with. The storage fills in the
    job key, the execution id and, for an update, the changed fields."""

    action: AuditAction
    source: AuditSource
    at: datetime
    actor: str | None = None
    #: JSON the caller adds to the entry's ``details`` (e.g. what a retention removed).
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit entries to list; ``since``/``until`` bound ``at``, inclusive."""

    job_key: str | None = None
    actions: Sequence[AuditAction] = ()
    since: datetime | None = None
    until: datetime | None = None
