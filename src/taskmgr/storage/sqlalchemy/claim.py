"""One claim transaction: read the due work, ask the planner, apply its plan.

Everything read here is locked for the rest of the transaction (PostgreSQL: row locks
taken with ``SKIP LOCKED``, so a claim never waits for another; SQLite: the database
write lock of ``BEGIN IMMEDIATE``). The compare-and-set on ``next_run_at`` is
therefore decided on rows nobody else can change until we commit, and the writes
repeat its condition. Statements are set-based: a claim costs the same handful of
round trips for 1 slot or 1,000.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.audit import AuditAction
from taskmgr.core.enums import PauseScope
from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger, Job, JobState
from taskmgr.core.pauses import Pause
from taskmgr.core.windows import MaintenanceWindow, deferral
from taskmgr.exceptions import StorageError
from taskmgr.storage.auditing import by_code, job_changes
from taskmgr.storage.base import (
    ClaimBatch,
    Claimed,
    JobAdvance,
    NewExecution,
    PendingDecision,
    Planner,
)
from taskmgr.storage.common import PAUSE_FIELDS, apply_job_changes
from taskmgr.storage.inputs import checked_plan
from taskmgr.storage.sqlalchemy.audit import insert_entry
from taskmgr.storage.sqlalchemy.pauses import honour_pauses
from taskmgr.storage.sqlalchemy.rows import (
    execution_from_row,
    execution_values,
    job_from_row,
    trusted_model,
)
from taskmgr.storage.sqlalchemy.statements import (
    Statements,
    active_counts,
    active_group_counts,
)
from taskmgr.storage.sqlalchemy.tables import Tables
from taskmgr.storage.sqlalchemy.windows import deferred_condition, read_windows

__all__ = ["ClaimApplier"]


class _LostError(Exception):
    """An advance lost its compare-and-set while being applied on its own."""


class ClaimApplier:
    """Applies one claim on ``conn``, an open transaction: it needs only the tables, their
    statements and the dialect, never the storage object itself."""

    def __init__(
        self,
        conn: Connection,
        tables: Tables,
        sql: Statements,
        *,
        sqlite: bool,
        now: datetime,
        owner: str,
        pausing: bool = True,
        horizon: datetime | None = None,
        windowing: bool = True,
    ) -> None:
        self.conn = conn
        self.now = now
        #: Jobs due up to this are read (a look-ahead); everything else is judged at now.
        self.horizon = now if horizon is None else horizon
        self.owner = owner
        self.sqlite = sqlite
        self.tables = tables
        #: Whether a pause may be stored or have run out (read with the owner's status).
        self.pausing = pausing
        #: The pauses of queues and of the service in effect (read by :meth:`read`).
        self.pauses: list[Pause] = []
        #: Whether a maintenance window may be stored (read with the owner's status).
        self.windowing = windowing
        #: The stored maintenance windows (read by :meth:`read`).
        self.windows: list[MaintenanceWindow] = []
        self.jobs = tables.jobs
        self.executions = tables.executions
        self.audit = tables.audit
        self.sql = sql
        #: Job rows this transaction holds (locked), as they are now.
        self.held: dict[int, Job] = {}
        #: Pending executions this transaction holds (locked).
        self.pending: dict[str, Execution] = {}

    # -- read ----------------------------------------------------------------------

    def _lock_jobs(self, ids: Iterable[int]) -> None:
        """Lock and read the job rows among ``ids`` not held yet; rows another
        transaction holds are skipped, deleted rows are simply absent."""
        wanted = set(ids) - self.held.keys()
        if wanted:
            result = self.conn.execute(self.sql.lock_jobs, {"b_ids": sorted(wanted)})
            for row in result.mappings():
                job = job_from_row(row)
                self.held[job.id] = job

    def _lock_pending(self, ids: Iterable[str]) -> None:
        wanted = set(ids) - self.pending.keys()
        if wanted:
            result = self.conn.execute(self.sql.lock_pending, {"b_ids": sorted(wanted)})
            for row in result.mappings():
                execution = execution_from_row(row)
                self.pending[execution.id] = execution

    def read(self, limit: int) -> ClaimBatch:
        params: dict[str, Any] = {"b_now": self.now, "b_due": self.horizon, "b_limit": limit}
        due_sql, pending_sql = self.sql.due_jobs, self.sql.due_pending
        service = False
        if self.pausing:
            pauses = self.pauses = honour_pauses(
                self.conn, self.tables, now=self.now, sqlite=self.sqlite
            )
            if pauses:
                service = any(p.scope is PauseScope.SERVICE for p in pauses)
                params["b_service"] = service
                params["b_queues"] = [p.name for p in pauses if p.scope is PauseScope.QUEUE]
                due_sql, pending_sql = self.sql.paused.due_jobs, self.sql.paused.due_pending
        if self.windowing:
            self.windows = read_windows(self.conn, self.tables)
            deferrals = deferral(self.windows, self.now)
            if deferrals:  # the jobs a defer window holds are not due until it closes
                due_sql = due_sql.where(~deferred_condition(self.tables, deferrals))
        due_jobs = [job_from_row(row) for row in self.conn.execute(due_sql, params).mappings()]
        self.held.update((job.id, job) for job in due_jobs)

        due_pending = (
            []  # the service is paused: every pending run waits
            if service
            else [
                execution_from_row(row) for row in self.conn.execute(pending_sql, params).mappings()
            ]
        )
        self.pending.update((e.id, e) for e in due_pending)

        self._lock_jobs(e.job_id for e in due_pending)
        absent = {e.job_id for e in due_pending} - self.held.keys()
        if absent and not self.sqlite:
            # Absent = deleted, or locked by another claimer. The planner would cancel
            # the pending runs of a deleted job, so leave out those whose job exists.
            busy = set(
                self.conn.execute(self.sql.existing_jobs, {"b_ids": sorted(absent)}).scalars()
            )
            due_pending = [e for e in due_pending if e.job_id not in busy]

        # Counted on the locked job rows, as max_instances is: a claimer that starts a
        # run of a group holds its job's row until it commits, so another one counting
        # that group either skips the job or sees the started run.
        active = active_counts(self.conn, self.sql, sorted(self.held))
        keyed = sorted(i for i, job in self.held.items() if job.concurrency_key is not None)
        return ClaimBatch(
            now=self.now,
            due_jobs=due_jobs,
            due_pending=due_pending,
            jobs=dict(self.held),
            active=active,
            active_groups=active_group_counts(self.conn, self.sql, keyed),
            pauses=self.pauses,
            horizon=self.horizon,
            windows=self.windows,
        )

    # -- apply ---------------------------------------------------------------------

    def run(self, limit: int, planner: Planner) -> list[Claimed]:
        plan = checked_plan(planner(self.read(limit)))
        claimed = self._advance(plan.advances)
        claimed += self._decide(plan.pending)
        self._orphan(plan.orphan_job_ids)
        return claimed

    def _advance(self, advances: Sequence[JobAdvance]) -> list[Claimed]:
        if not advances:
            return []
        self._lock_jobs(a.job_id for a in advances)
        # Decide every compare-and-set on the held rows, in plan order, as if each
        # winner applies; then apply them all at once.
        current = dict(self.held)
        winners: list[tuple[JobAdvance, Job, list[Execution]]] = []
        for advance in advances:
            decided = self._decide_move(advance, current)
            if decided is not None:
                winners.append((advance, *decided))
                current[advance.job_id] = decided[0]
        if not winners:
            return []

        try:
            with self.conn.begin_nested():
                self._move_jobs([(a, j) for a, j, _ in winners])
                self._insert([row for _, _, rows in winners for row in rows])
        except (sa.exc.IntegrityError, _LostError):
            # A slot (or id) already exists: apply the advances one by one so only the
            # conflicting ones lose. Rare, so the extra round trips don't matter.
            winners = self._advance_one_by_one(advances)

        claimed = []
        for _, job, rows in winners:
            self.held[job.id] = job
            claimed += [Claimed(row, job) for row in rows if row.status is ExecutionStatus.RUNNING]
        return claimed

    def _decide_move(
        self, advance: JobAdvance, current: dict[int, Job]
    ) -> tuple[Job, list[Execution]] | None:
        """The job as ``advance`` leaves it and the rows it inserts, if its
        compare-and-set wins on ``current`` (the jobs as the advances before it left
        them); None if it loses."""
        job = current.get(advance.job_id)
        if job is None or job.next_run_at != advance.expected_next_run_at:
            return None
        moved = job.model_copy(
            update={
                "next_run_at": advance.next_run_at,
                "last_run_at": advance.last_run_at or job.last_run_at,
            }
        )
        return moved, [_planned_execution(new, self.owner, self.now) for new in advance.executions]

    def _advance_one_by_one(
        self, advances: Sequence[JobAdvance]
    ) -> list[tuple[JobAdvance, Job, list[Execution]]]:
        """Each advance in its own savepoint, decided on the job as the advances applied
        before it left it: one that loses (to a conflict) leaves its job as it was, so a
        later advance of that job is decided on the unchanged row, as ``claim`` says."""
        current = dict(self.held)
        kept = []
        for advance in advances:
            decided = self._decide_move(advance, current)
            if decided is None:
                continue
            job, rows = decided
            try:
                with self.conn.begin_nested():
                    self._move_jobs([(advance, job)])
                    self._insert(rows)
            except (sa.exc.IntegrityError, _LostError):
                continue
            current[job.id] = job
            kept.append((advance, job, rows))
        return kept

    def _move_jobs(self, moves: Sequence[tuple[JobAdvance, Job]]) -> None:
        statement = self.sql.move_jobs
        params = [
            {
                "b_id": advance.job_id,
                "b_expected": advance.expected_next_run_at,
                "b_next": advance.next_run_at,
                "b_last": advance.last_run_at,
            }
            for advance, _ in moves
        ]
        result = self.conn.execute(statement, params)
        if len(params) == 1 and result.rowcount != 1:
            raise _LostError
        if self.conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(params):
            # The rows are locked by this transaction, so this means a bug, not a race.
            raise StorageError(
                f"claim: {result.rowcount} of {len(params)} locked jobs were advanced"
            )

    def _insert(self, rows: Sequence[Execution]) -> None:
        if rows:
            self.conn.execute(self.sql.insert_executions, [execution_values(r) for r in rows])

    def _decide(self, decisions: Sequence[PendingDecision]) -> list[Claimed]:
        if not decisions:
            return []
        self._lock_pending(d.execution_id for d in decisions)
        starts: list[Claimed] = []
        finals: list[dict[str, Any]] = []
        decided: set[str] = set()
        start_jobs = [
            self.pending[d.execution_id].job_id
            for d in decisions
            if d.status is ExecutionStatus.RUNNING and d.execution_id in self.pending
        ]
        self._lock_jobs(start_jobs)
        for decision in decisions:
            execution = self.pending.get(decision.execution_id)
            if execution is None or execution.id in decided:
                continue
            if decision.status is ExecutionStatus.RUNNING:
                job = self.held.get(execution.job_id)
                if job is None:
                    continue  # deleted or busy elsewhere: nothing could run it now
                started = execution.model_copy(
                    update={
                        "status": ExecutionStatus.RUNNING,
                        "owner": self.owner,
                        "dispatched_at": self.now,
                    }
                )
                starts.append(Claimed(started, job))
            else:
                finals.append(
                    {
                        "b_id": execution.id,
                        "b_status": ExecutionStatus(decision.status).value,
                        "b_message": decision.error_message,
                    }
                )
            decided.add(execution.id)

        if starts:
            self.conn.execute(
                self.sql.start_pending,
                {
                    "b_ids": [claimed.execution.id for claimed in starts],
                    "b_owner": self.owner,
                    "b_now": self.now,
                },
            )
        if finals:
            for final in finals:
                final["b_now"] = self.now
            self.conn.execute(self.sql.finish_pending, finals)
        return starts

    def _orphan(self, job_ids: Sequence[int]) -> None:
        if not job_ids:
            return
        self._lock_jobs(job_ids)
        held = [self.held[i] for i in job_ids if i in self.held]
        changed = [job for job in held if job.state is not JobState.ORPHANED]
        if changed:
            c = self.jobs.c
            self.conn.execute(
                sa.update(self.jobs)
                .where(c.id.in_([job.id for job in changed]))
                .values(
                    state=JobState.ORPHANED.value,
                    version=c.version + 1,
                    updated_at=self.now,
                    **dict.fromkeys(PAUSE_FIELDS),
                )
            )
            # the audit log: a change taskmgr made on its own (the function is gone)
            record = by_code(AuditAction.UPDATE, self.now)
            for job in changed:
                orphaned = apply_job_changes(job, {"state": JobState.ORPHANED}, now=self.now)
                details = {"changes": job_changes(job, orphaned)}
                insert_entry(self.conn, self.audit, record, job_key=job.key, details=details)


def _planned_execution(new: NewExecution, owner: str, now: datetime) -> Execution:
    """The stored form of a planner's row (as ``execution_from_new`` with ``for_owner``),
    without the model's validation: its enums and datetimes were checked with the plan
    (:func:`~taskmgr.storage.inputs.checked_plan`), and the planner builds the rest from
    job rows read back from our own tables, so it already has the model's types."""
    running = new.status is ExecutionStatus.RUNNING
    kwargs = dict(new.kwargs)
    return trusted_model(
        Execution,
        {
            "id": new.id,
            "job_id": new.job_id,
            "job_key": new.job_key,
            "scheduled_for": new.scheduled_for,
            "attempt": new.attempt,
            "chain_id": new.chain_id or new.id,
            "trigger": ExecutionTrigger(new.trigger),
            "status": ExecutionStatus(new.status),
            "due_at": new.due_at,
            "queued": new.queued,
            # deep copy as execution_from_new does, skipped for the common empty kwargs
            "kwargs": copy.deepcopy(kwargs) if kwargs else kwargs,
            "concurrency_value": new.concurrency_value,
            "owner": owner if running else new.owner,
            "actor": new.actor,
            "created_at": new.created_at,
            "dispatched_at": (new.dispatched_at or now) if running else new.dispatched_at,
            "started_at": None,
            "completed_at": new.completed_at,
            "duration_ms": None,
            "error_type": None,
            "error_message": new.error_message,
            "traceback": None,
            "result_summary": None,
            "celery_task_id": None,
            "idempotency_key": new.idempotency_key,
            "trace_context": dict(new.trace_context) if new.trace_context else None,
        },
    )
