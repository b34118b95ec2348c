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
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger, Job, JobState
from taskmgr.exceptions import StorageError
from taskmgr.storage.base import (
    ClaimBatch,
    Claimed,
    JobAdvance,
    NewExecution,
    PendingDecision,
    Planner,
)
from taskmgr.storage.sqlalchemy.rows import (
    execution_from_row,
    execution_values,
    job_from_row,
    trusted_model,
)
from taskmgr.storage.sqlalchemy.tables import Tables

if TYPE_CHECKING:
    from taskmgr.storage.sqlalchemy.store import SQLAlchemyStorage

__all__ = ["ClaimApplier"]

_PENDING = ExecutionStatus.PENDING.value
_RUNNING = ExecutionStatus.RUNNING.value

#: Execution columns an outcome writes.
OUTCOME_COLUMNS = (
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "error_type",
    "error_message",
    "traceback",
    "result_summary",
)


class _LostError(Exception):
    """An advance lost its compare-and-set while being applied on its own."""


class Statements:
    """The claim's statements, built once per tables and dialect: a statement object
    reused with bound parameters skips SQLAlchemy's per-call construction and
    cache-key generation (the compiled form is cached by the engine)."""

    def __init__(self, tables: Tables, *, sqlite: bool) -> None:
        jobs, executions = tables.jobs, tables.executions
        j, c = jobs.c, executions.c

        def lock(query: sa.Select[Any], *, skip_locked: bool = True) -> sa.Select[Any]:
            return query if sqlite else query.with_for_update(skip_locked=skip_locked)

        ids: sa.BindParameter[Any] = sa.bindparam("b_ids", expanding=True)
        limit = sa.bindparam("b_limit", type_=sa.Integer)
        self.due_jobs = lock(
            sa.select(jobs)
            .where(j.state == JobState.ACTIVE.value, j.next_run_at <= sa.bindparam("b_now"))
            .order_by(j.next_run_at)
            .limit(limit)
        )
        self.due_pending = lock(
            sa.select(executions)
            .where(c.status == _PENDING, c.due_at <= sa.bindparam("b_now"))
            .order_by(c.due_at)
            .limit(limit)
        )
        self.lock_jobs = lock(sa.select(jobs).where(j.id.in_(ids)))
        self.lock_pending = lock(sa.select(executions).where(c.id.in_(ids), c.status == _PENDING))
        self.existing_jobs = sa.select(j.id).where(j.id.in_(ids))
        self.move_jobs = (
            sa.update(jobs)
            .where(j.id == sa.bindparam("b_id"), j.next_run_at == sa.bindparam("b_expected"))
            .values(
                next_run_at=sa.bindparam("b_next", type_=j.next_run_at.type),
                last_run_at=sa.func.coalesce(
                    sa.bindparam("b_last", type_=j.last_run_at.type), j.last_run_at
                ),
            )
        )
        self.insert_executions = sa.insert(executions)
        i = tables.instances.c
        self.instance_status = sa.select(i.status).where(i.id == sa.bindparam("b_owner"))
        if not sqlite:
            self.instance_status = self.instance_status.with_for_update(read=True)
        next_job = (
            sa.select(sa.func.min(j.next_run_at))
            .where(j.state == JobState.ACTIVE.value)
            .scalar_subquery()
        )
        next_pending = (
            sa.select(sa.func.min(c.due_at))
            .where(c.status == _PENDING, c.queued.is_(False))
            .scalar_subquery()
        )
        self.next_due = sa.select(next_job, next_pending)
        self.active_counts = (
            sa.select(c.job_id, sa.func.count())
            .where(
                c.job_id.in_(ids),
                sa.or_(c.status == _RUNNING, sa.and_(c.status == _PENDING, c.queued.is_(False))),
            )
            .group_by(c.job_id)
        )
        self.outcome_owners = lock(
            sa.select(c.id, c.owner).where(c.id.in_(ids), c.status == _RUNNING), skip_locked=False
        ).order_by(c.id)
        self.outcome_update = (
            sa.update(executions)
            .where(
                c.id == sa.bindparam("b_id"),
                c.owner == sa.bindparam("b_owner"),
                c.status == _RUNNING,
            )
            .values({name: sa.bindparam(f"b_{name}") for name in OUTCOME_COLUMNS})
        )
        pending_row = sa.and_(c.id == sa.bindparam("b_id"), c.status == _PENDING)
        self.start_pending = (
            sa.update(executions)
            .where(pending_row)
            .values(
                status=ExecutionStatus.RUNNING.value,
                owner=sa.bindparam("b_owner", type_=c.owner.type),
                dispatched_at=sa.bindparam("b_now", type_=c.dispatched_at.type),
            )
        )
        self.finish_pending = (
            sa.update(executions)
            .where(pending_row)
            .values(
                status=sa.bindparam("b_status", type_=c.status.type),
                completed_at=sa.bindparam("b_now", type_=c.completed_at.type),
                error_message=sa.func.coalesce(
                    sa.bindparam("b_message", type_=c.error_message.type), c.error_message
                ),
            )
        )


_statements: weakref.WeakKeyDictionary[Tables, dict[bool, Statements]] = weakref.WeakKeyDictionary()


def statements(tables: Tables, *, sqlite: bool) -> Statements:
    by_dialect = _statements.get(tables)
    if by_dialect is None:
        by_dialect = _statements.setdefault(tables, {})
    built = by_dialect.get(sqlite)
    if built is None:
        built = by_dialect[sqlite] = Statements(tables, sqlite=sqlite)
    return built


class ClaimApplier:
    def __init__(
        self, storage: SQLAlchemyStorage, conn: Connection, *, now: datetime, owner: str
    ) -> None:
        self.storage = storage
        self.conn = conn
        self.now = now
        self.owner = owner
        self.jobs = storage.tables.jobs
        self.executions = storage.tables.executions
        self.sql = statements(storage.tables, sqlite=storage.sqlite)
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
        params = {"b_now": self.now, "b_limit": limit}
        due_jobs = [
            job_from_row(row) for row in self.conn.execute(self.sql.due_jobs, params).mappings()
        ]
        self.held.update((job.id, job) for job in due_jobs)

        due_pending = [
            execution_from_row(row)
            for row in self.conn.execute(self.sql.due_pending, params).mappings()
        ]
        self.pending.update((e.id, e) for e in due_pending)

        self._lock_jobs(e.job_id for e in due_pending)
        absent = {e.job_id for e in due_pending} - self.held.keys()
        if absent and not self.storage.sqlite:
            # Absent = deleted, or locked by another claimer. The planner would cancel
            # the pending runs of a deleted job, so leave out those whose job exists.
            busy = set(
                self.conn.execute(self.sql.existing_jobs, {"b_ids": sorted(absent)}).scalars()
            )
            due_pending = [e for e in due_pending if e.job_id not in busy]

        active = self.storage.active_counts(self.conn, sorted(self.held))
        return ClaimBatch(
            now=self.now,
            due_jobs=due_jobs,
            due_pending=due_pending,
            jobs=dict(self.held),
            active=active,
        )

    # -- apply ---------------------------------------------------------------------

    def run(self, limit: int, planner: Planner) -> list[Claimed]:
        plan = planner(self.read(limit))
        claimed = self._advance(plan.advances)
        claimed += self._decide(plan.pending)
        self._orphan(plan.orphan_job_ids)
        return claimed

    def _advance(self, advances: Sequence[JobAdvance]) -> list[Claimed]:
        if not advances:
            return []
        self._lock_jobs(a.job_id for a in advances)
        # Decide every compare-and-set on the held rows, in plan order.
        current = dict(self.held)
        winners: list[tuple[JobAdvance, Job, list[Execution]]] = []
        for advance in advances:
            job = current.get(advance.job_id)
            if job is None or job.next_run_at != advance.expected_next_run_at:
                continue
            moved = job.model_copy(
                update={
                    "next_run_at": advance.next_run_at,
                    "last_run_at": advance.last_run_at or job.last_run_at,
                }
            )
            rows = [_planned_execution(new, self.owner, self.now) for new in advance.executions]
            winners.append((advance, moved, rows))
            current[job.id] = moved
        if not winners:
            return []

        try:
            with self.conn.begin_nested():
                self._move_jobs([(a, j) for a, j, _ in winners])
                self._insert([row for _, _, rows in winners for row in rows])
        except (sa.exc.IntegrityError, _LostError):
            # A slot (or id) already exists: apply the advances one by one so only the
            # conflicting ones lose. Rare, so the extra round trips don't matter.
            kept = []
            for advance, job, rows in winners:
                try:
                    with self.conn.begin_nested():
                        self._move_jobs([(advance, job)])
                        self._insert(rows)
                    kept.append((advance, job, rows))
                except (sa.exc.IntegrityError, _LostError):
                    continue
            winners = kept

        claimed = []
        for _, job, rows in winners:
            self.held[job.id] = job
            claimed += [Claimed(row, job) for row in rows if row.status is ExecutionStatus.RUNNING]
        return claimed

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
                [
                    {"b_id": claimed.execution.id, "b_owner": self.owner, "b_now": self.now}
                    for claimed in starts
                ],
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
        ids = [job_id for job_id in job_ids if job_id in self.held]
        if ids:
            c = self.jobs.c
            self.conn.execute(
                sa.update(self.jobs)
                .where(c.id.in_(ids), c.state != JobState.ORPHANED.value)
                .values(state=JobState.ORPHANED.value, version=c.version + 1, updated_at=self.now)
            )


def _planned_execution(new: NewExecution, owner: str, now: datetime) -> Execution:
    """The stored form of a planner's row (as ``execution_from_new`` with ``for_owner``),
    without validation: the planner builds it from job rows read back from our own
    tables, so its values already have the model's types."""
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
            "trigger": ExecutionTrigger(new.trigger),
            "status": ExecutionStatus(new.status),
            "due_at": new.due_at,
            "queued": new.queued,
            # deep copy as execution_from_new does, skipped for the common empty kwargs
            "kwargs": copy.deepcopy(kwargs) if kwargs else kwargs,
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
        },
    )
