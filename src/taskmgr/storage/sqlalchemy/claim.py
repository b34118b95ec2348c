"""One claim transaction: read the due work, ask the planner, apply its plan.

Everything read here is locked for the rest of the transaction (PostgreSQL: row locks
taken with ``SKIP LOCKED``, so a claim never waits for another; SQLite: the database
write lock of ``BEGIN IMMEDIATE``). The compare-and-set on ``next_run_at`` is
therefore decided on rows nobody else can change until we commit, and the writes
repeat its condition. Statements are set-based: a claim costs the same handful of
round trips for 1 slot or 1,000.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.exceptions import StorageError
from taskmgr.schemas import Execution, ExecutionStatus, Job, JobState
from taskmgr.storage._common import execution_from_new, for_owner
from taskmgr.storage.base import ClaimBatch, Claimed, JobAdvance, PendingDecision, Planner
from taskmgr.storage.sqlalchemy.rows import execution_from_row, execution_values, job_from_row

if TYPE_CHECKING:
    from taskmgr.storage.sqlalchemy.store import SQLAlchemyStorage

__all__ = ["ClaimApplier"]

_PENDING = ExecutionStatus.PENDING.value


class _LostError(Exception):
    """An advance lost its compare-and-set while being applied on its own."""


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
            query = sa.select(self.jobs).where(self.jobs.c.id.in_(wanted))
            for row in self.conn.execute(self.storage.lock(query, skip_locked=True)).mappings():
                job = job_from_row(row)
                self.held[job.id] = job

    def _lock_pending(self, ids: Iterable[str]) -> None:
        wanted = set(ids) - self.pending.keys()
        if wanted:
            c = self.executions.c
            query = sa.select(self.executions).where(c.id.in_(wanted), c.status == _PENDING)
            for row in self.conn.execute(self.storage.lock(query, skip_locked=True)).mappings():
                execution = execution_from_row(row)
                self.pending[execution.id] = execution

    def read(self, limit: int) -> ClaimBatch:
        jobs, c = self.jobs, self.executions.c
        due_query = (
            sa.select(jobs)
            .where(jobs.c.state == JobState.ACTIVE.value, jobs.c.next_run_at <= self.now)
            .order_by(jobs.c.next_run_at)
            .limit(limit)
        )
        lock = self.storage.lock
        due_jobs = [
            job_from_row(row)
            for row in self.conn.execute(lock(due_query, skip_locked=True)).mappings()
        ]
        self.held.update((job.id, job) for job in due_jobs)

        pending_query = (
            sa.select(self.executions)
            .where(c.status == _PENDING, c.due_at <= self.now)
            .order_by(c.due_at)
            .limit(limit)
        )
        due_pending = [
            execution_from_row(row)
            for row in self.conn.execute(lock(pending_query, skip_locked=True)).mappings()
        ]
        self.pending.update((e.id, e) for e in due_pending)

        self._lock_jobs(e.job_id for e in due_pending)
        absent = {e.job_id for e in due_pending} - self.held.keys()
        if absent and not self.storage.sqlite:
            # Absent = deleted, or locked by another claimer. The planner would cancel
            # the pending runs of a deleted job, so leave out those whose job exists.
            busy = set(
                self.conn.execute(sa.select(jobs.c.id).where(jobs.c.id.in_(absent))).scalars()
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
            rows = [
                execution_from_new(new, **for_owner(new, self.owner, self.now))
                for new in advance.executions
            ]
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
        c = self.jobs.c
        statement = (
            sa.update(self.jobs)
            .where(c.id == sa.bindparam("b_id"), c.next_run_at == sa.bindparam("b_expected"))
            .values(
                next_run_at=sa.bindparam("b_next", type_=c.next_run_at.type),
                last_run_at=sa.func.coalesce(
                    sa.bindparam("b_last", type_=c.last_run_at.type), c.last_run_at
                ),
            )
        )
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
            self.conn.execute(sa.insert(self.executions), [execution_values(r) for r in rows])

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

        c = self.executions.c
        pending_row = sa.and_(c.id == sa.bindparam("b_id"), c.status == _PENDING)
        if starts:
            self.conn.execute(
                sa.update(self.executions)
                .where(pending_row)
                .values(
                    status=ExecutionStatus.RUNNING.value,
                    owner=self.owner,
                    dispatched_at=self.now,
                ),
                [{"b_id": claimed.execution.id} for claimed in starts],
            )
        if finals:
            self.conn.execute(
                sa.update(self.executions)
                .where(pending_row)
                .values(
                    status=sa.bindparam("b_status", type_=c.status.type),
                    completed_at=self.now,
                    error_message=sa.func.coalesce(
                        sa.bindparam("b_message", type_=c.error_message.type), c.error_message
                    ),
                ),
                finals,
            )
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
