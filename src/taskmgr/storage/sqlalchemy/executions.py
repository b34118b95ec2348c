"""The SQL backend's execution operations: manual runs and retries, outcomes, the
hand-over to a worker, the history (listing, retention, summary) and the queues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskmgr.core.models import Execution, ExecutionStatus, InstanceStatus, JobQueue
from taskmgr.exceptions import (
    ExecutionNotFoundError,
    JobBusyError,
    JobNotFoundError,
)
from taskmgr.storage.auditing import checked_audit
from taskmgr.storage.base import (
    AuditRecord,
    Claimed,
    ExecutionFilter,
    HistorySummary,
    NewExecution,
    Outcome,
)
from taskmgr.storage.common import (
    FINAL_STATUSES,
    JOB_DELETED_BEFORE_START,
    check_job_versions,
    execution_conflict,
    execution_from_new,
    not_pending,
)
from taskmgr.storage.inputs import (
    checked_cursor,
    checked_filter,
    checked_job_id,
    checked_limit,
    checked_outcome,
    checked_task_id_changes,
    checked_task_ids,
    members,
    utc,
)
from taskmgr.storage.sqlalchemy.audit import insert_entry
from taskmgr.storage.sqlalchemy.database import Database, retried_once_if_timed_out
from taskmgr.storage.sqlalchemy.handover import autocommitted, record_all, take_over_all
from taskmgr.storage.sqlalchemy.rows import (
    execution_from_row,
    execution_values,
    insert_untaken,
    job_from_row,
)
from taskmgr.storage.sqlalchemy.statements import (
    OUTCOME_COLUMNS,
    active_counts,
    outcome_arrays,
)
from taskmgr.storage.task_handover import TakeOver

__all__ = ["ExecutionOperations"]

_RUNNING = ExecutionStatus.RUNNING.value
_PENDING = ExecutionStatus.PENDING.value
_NOBODY = object()


class ExecutionOperations(Database):
    """The execution half of the storage contract (see
    :class:`~taskmgr.storage.base.Storage`)."""

    @retried_once_if_timed_out
    def add_execution(
        self,
        new: NewExecution,
        *,
        max_active: int | None = None,
        audit: AuditRecord | None = None,
        job_version: int | None = None,
    ) -> Execution:
        jobs = self.tables.jobs
        execution = execution_from_new(new)
        audit = checked_audit(audit)
        with self._tx("add_execution") as conn:
            # Locking the job row serialises this check with claims and other manual runs.
            query = sa.select(jobs.c.version).where(jobs.c.id == new.job_id)
            version = conn.execute(self._lock(query)).scalar()
            if job_version is not None:
                check_job_versions({new.job_id: version}.get, {new.job_id: job_version})
            elif version is None:
                raise JobNotFoundError(new.job_key)
            if max_active is not None:
                active = active_counts(conn, self._statements(), [new.job_id])[new.job_id]
                if active >= max_active:
                    raise JobBusyError(
                        f"job {new.job_key!r} has {active} active run(s) (limit {max_active})"
                    )
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(self.tables.executions), [execution_values(execution)])
            except sa.exc.IntegrityError as exc:
                raise execution_conflict(execution) from exc
            insert_entry(
                conn,
                self.tables.audit,
                audit,
                job_key=execution.job_key,
                execution_id=execution.id,
            )
            self._changed(conn)
        return execution

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        outcomes = [checked_outcome(outcome) for outcome in outcomes]
        sql = self._statements()
        ids = sorted({outcome.execution_id for outcome in outcomes})
        if (
            not self._sqlite
            and len(ids) == len(outcomes)
            and all(o.retry is None for o in outcomes)
        ):
            # no retry to insert with them: one statement, one round trip
            with autocommitted(self.engine, "record_outcomes") as conn:
                params = outcome_arrays([_outcome_params(outcome) for outcome in outcomes])
                written = record_all(conn, self.tables, params)
            return [outcome.execution_id in written for outcome in outcomes]
        with self._tx("record_outcomes") as conn:
            # Lock in id order so concurrent writers (reap) cannot deadlock with us.
            rows = conn.execute(sql.outcome_owners, {"b_ids": ids})
            owners: dict[str, str | None] = {row.id: row.owner for row in rows}
            applied: list[bool] = []
            updates: list[dict[str, Any]] = []
            retries: list[NewExecution] = []
            for outcome in outcomes:
                ok = owners.get(outcome.execution_id, _NOBODY) == outcome.owner
                applied.append(ok)
                if not ok:
                    continue
                del owners[outcome.execution_id]  # a second outcome for it is rejected
                updates.append(_outcome_params(outcome))
                if outcome.retry is not None:
                    retries.append(outcome.retry)
            if updates and sql.outcome_update_all is not None:
                conn.execute(sql.outcome_update_all, outcome_arrays(updates))
            elif updates:
                conn.execute(sql.outcome_update, updates)
            if retries:
                insert_untaken(conn, self.tables.executions, retries)
        return applied

    def assign_task_ids(self, task_ids: Mapping[str, str], *, owner: str) -> set[str]:
        given = checked_task_ids(task_ids)
        if not given:
            return set()
        executions = self.tables.executions
        c = executions.c
        ids = sorted(given)  # rows locked in id order, like every batch write here
        waiting = sa.and_(c.status == _RUNNING, c.owner == owner, c.started_at.is_(None))
        with self._tx("assign_task_ids") as conn:
            conn.execute(
                sa.update(executions)
                .where(c.id == sa.bindparam("b_id"), waiting, c.celery_task_id.is_(None))
                .values(celery_task_id=sa.bindparam("b_task", type_=c.celery_task_id.type)),
                [{"b_id": execution_id, "b_task": given[execution_id]} for execution_id in ids],
            )
            rows = conn.execute(
                sa.select(c.id, c.celery_task_id).where(c.id.in_(ids), waiting)
            ).all()
        return {row.id for row in rows if row.celery_task_id == given[row.id]}

    def replace_task_ids(self, task_ids: Mapping[str, tuple[str, str]], *, owner: str) -> set[str]:
        given = checked_task_id_changes(task_ids)
        if not given:
            return set()
        executions = self.tables.executions
        c = executions.c
        ids = sorted(given)  # rows locked in id order, like every batch write here
        waiting = sa.and_(c.status == _RUNNING, c.owner == owner, c.started_at.is_(None))
        task = c.celery_task_id.type
        with self._tx("replace_task_ids") as conn:
            conn.execute(
                sa.update(executions)
                .where(
                    c.id == sa.bindparam("b_id"),
                    waiting,
                    c.celery_task_id == sa.bindparam("b_old", type_=task),
                )
                .values(celery_task_id=sa.bindparam("b_new", type_=task)),
                [
                    {
                        "b_id": execution_id,
                        "b_old": given[execution_id][0],
                        "b_new": given[execution_id][1],
                    }
                    for execution_id in ids
                ],
            )
            rows = conn.execute(
                sa.select(c.id, c.celery_task_id).where(c.id.in_(ids), waiting)
            ).all()
        return {row.id for row in rows if row.celery_task_id == given[row.id][1]}

    def take_over(
        self,
        execution_id: str,
        *,
        from_owner: str,
        to_owner: str,
        attempt: int,
        now: datetime,
        celery_task_id: str,
    ) -> Claimed | None:
        now = utc(now, "now")
        if not isinstance(celery_task_id, str):
            return None  # no message carries no id (and ``== None`` would match NULL)
        with self._tx("take_over") as conn:
            return self._take_over(
                conn,
                TakeOver(execution_id, from_owner, attempt, celery_task_id),
                to_owner=to_owner,
                now=now,
            )

    def take_over_many(
        self, requests: Sequence[TakeOver], *, to_owner: str, now: datetime
    ) -> list[Claimed | None]:
        now = utc(now, "now")
        valid = [r for r in requests if isinstance(r.celery_task_id, str)]
        if not valid:
            return [None] * len(requests)
        if not self._sqlite:  # one statement: atomic, one round trip
            with autocommitted(self.engine, "take_over_many") as conn:
                found = iter(take_over_all(conn, self.tables, valid, to_owner=to_owner, now=now))
        else:
            with self._tx("take_over_many") as conn:
                found = iter([self._take_over(conn, r, to_owner=to_owner, now=now) for r in valid])
        return [next(found) if isinstance(r.celery_task_id, str) else None for r in requests]

    def _take_over(
        self, conn: sa.Connection, request: TakeOver, *, to_owner: str, now: datetime
    ) -> Claimed | None:
        execution_id, from_owner = request.execution_id, request.from_owner
        attempt, celery_task_id = request.attempt, request.celery_task_id
        executions, jobs, i = self.tables.executions, self.tables.jobs, self.tables.instances.c
        c = executions.c
        # like claim: a shared lock on the taker's row keeps the reaper from
        # declaring it dead between this check and the commit
        mine = sa.select(i.status).where(i.id == to_owner)
        if not self._sqlite:
            mine = mine.with_for_update(read=True)
        status = conn.execute(mine).scalar()
        if status is not None and status != InstanceStatus.RUNNING.value:
            return None
        row = (
            conn.execute(
                self._lock(
                    sa.select(executions).where(
                        c.id == execution_id,
                        c.status == _RUNNING,
                        c.owner == from_owner,
                        c.attempt == attempt,
                        # not started, and this message is the one published for
                        # it: a forged or replayed one starts nothing
                        c.started_at.is_(None),
                        c.celery_task_id == celery_task_id,
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        job_row = conn.execute(sa.select(jobs).where(jobs.c.id == row["job_id"])).mappings().first()
        changes: dict[str, Any]
        if job_row is None:
            changes = {
                "status": ExecutionStatus.CANCELLED.value,
                "completed_at": now,
                "error_message": JOB_DELETED_BEFORE_START,
            }
        else:
            changes = {"owner": to_owner, "started_at": now}
        conn.execute(
            sa.update(executions)
            .where(
                c.id == execution_id,
                c.status == _RUNNING,
                c.owner == from_owner,
                c.started_at.is_(None),
                c.celery_task_id == celery_task_id,
            )
            .values(changes)
        )
        if job_row is None:
            return None
        execution = execution_from_row(row).model_copy(
            update={"owner": to_owner, "started_at": now, "celery_task_id": celery_task_id}
        )
        return Claimed(execution, job_from_row(job_row))

    def release(self, execution_id: str, *, owner: str, due_at: datetime) -> bool:
        due_at = utc(due_at, "due_at")
        c = self.tables.executions.c
        with self._tx("release") as conn:
            result = conn.execute(
                sa.update(self.tables.executions)
                .where(c.id == execution_id, c.status == _RUNNING, c.owner == owner)
                .values(
                    status=_PENDING,
                    owner=None,
                    dispatched_at=None,
                    started_at=None,
                    celery_task_id=None,  # a message published for it takes nothing over
                    due_at=due_at,
                )
            )
            if result.rowcount == 1:
                self._changed(conn)
        return bool(result.rowcount == 1)

    @retried_once_if_timed_out
    def cancel_pending(
        self,
        execution_id: str,
        *,
        now: datetime,
        message: str,
        audit: AuditRecord | None = None,
    ) -> Execution:
        now = utc(now, "now")
        audit = checked_audit(audit)
        table = self.tables.executions
        c = table.c
        with self._tx("cancel_pending") as conn:
            # Waits for a claim holding the row, then sees whether it started it.
            result = conn.execute(
                sa.update(table)
                .where(c.id == execution_id, c.status == _PENDING)
                .values(
                    status=ExecutionStatus.CANCELLED.value, completed_at=now, error_message=message
                )
            )
            row = conn.execute(sa.select(table).where(c.id == execution_id)).mappings().first()
            if row is None:
                raise ExecutionNotFoundError(execution_id)
            execution = execution_from_row(row)
            if result.rowcount != 1:
                raise not_pending(execution)
            insert_entry(
                conn,
                self.tables.audit,
                audit,
                job_key=execution.job_key,
                execution_id=execution.id,
            )
        return execution

    def get_execution(self, execution_id: str) -> Execution:
        executions = self.tables.executions
        with self._tx("get_execution", write=False) as conn:
            row = (
                conn.execute(sa.select(executions).where(executions.c.id == execution_id))
                .mappings()
                .first()
            )
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return execution_from_row(row)

    def list_executions(
        self,
        filters: ExecutionFilter,
        *,
        limit: int,
        before: tuple[datetime, str] | None = None,
    ) -> list[Execution]:
        filters = checked_filter(filters)
        checked_limit(limit)
        before = checked_cursor(before)
        c = self.tables.executions.c
        query = sa.select(self.tables.executions).order_by(c.created_at.desc(), c.id.desc())
        if filters.job_key is not None:
            query = query.where(c.job_key == filters.job_key)
        if filters.statuses:
            query = query.where(c.status.in_([s.value for s in filters.statuses]))
        if filters.triggers:
            query = query.where(c.trigger.in_([t.value for t in filters.triggers]))
        if filters.chain_id is not None:
            query = query.where(c.chain_id == filters.chain_id)
        if filters.since is not None:
            query = query.where(c.scheduled_for >= filters.since)
        if filters.until is not None:
            query = query.where(c.scheduled_for <= filters.until)
        if filters.owner is not None:
            query = query.where(c.owner == filters.owner)
        if before is not None:
            created_at, execution_id = before
            query = query.where(
                sa.or_(
                    c.created_at < created_at,
                    sa.and_(c.created_at == created_at, c.id < execution_id),
                )
            )
        with self._tx("list_executions", write=False) as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [execution_from_row(row) for row in rows]

    def delete_finished_executions(
        self,
        *,
        completed_before: datetime,
        limit: int,
        statuses: Sequence[ExecutionStatus] | None = None,
        job_id: int | None = None,
        default_retention: bool = False,
    ) -> int:
        completed_before = utc(completed_before, "completed_before")
        checked_limit(limit)
        checked_job_id(job_id)
        asked = None if statuses is None else members(ExecutionStatus, statuses, "statuses")
        wanted = [s for s in FINAL_STATUSES if asked is None or s in asked]
        if limit == 0 or not wanted:
            return 0
        executions = self.tables.executions
        c = executions.c
        oldest = (
            sa.select(c.id)
            .where(
                c.status.in_([s.value for s in wanted]),
                c.completed_at < completed_before,
            )
            .order_by(c.completed_at, c.id)
            .limit(limit)
        )
        if job_id is not None:
            oldest = oldest.where(c.job_id == job_id)
        if default_retention:
            jobs = self.tables.jobs
            own = sa.select(jobs.c.id).where(jobs.c.retention.is_not(None))
            oldest = oldest.where(c.job_id.not_in(own.scalar_subquery()))
        with self._tx("delete_finished_executions") as conn:
            result = conn.execute(sa.delete(executions).where(c.id.in_(oldest.scalar_subquery())))
        return int(result.rowcount)

    def history_summary(self) -> HistorySummary:
        c = self.tables.executions.c
        counts_query = sa.select(c.job_key, c.status, sa.func.count()).group_by(c.job_key, c.status)
        success_query = (
            sa.select(c.job_key, sa.func.max(c.completed_at, type_=c.completed_at.type))
            .where(c.status == ExecutionStatus.SUCCESS.value)
            .group_by(c.job_key)
        )
        with self._tx("history_summary", write=False) as conn:
            counts = conn.execute(counts_query).all()
            successes = conn.execute(success_query).all()
        return HistorySummary(
            counts={(key, ExecutionStatus(status)): int(n) for key, status, n in counts},
            last_success={key: when for key, when in successes if when is not None},
        )

    def job_queues(self, *, now: datetime) -> list[JobQueue]:
        now = utc(now, "now")
        c = self.tables.executions.c
        pending = c.status == _PENDING
        due = sa.and_(pending, c.due_at <= now)
        query = (
            sa.select(
                c.job_id,
                c.job_key,
                sa.func.sum(sa.case((pending, 1), else_=0)),
                sa.func.sum(sa.case((due, 1), else_=0)),
                sa.func.sum(sa.case((c.status == _RUNNING, 1), else_=0)),
                sa.func.min(sa.case((due, c.due_at)), type_=c.due_at.type),
            )
            # An index that leads with status (status, due_at or completed_at) reads
            # only the rows that have not ended, however long the finished history.
            .where(c.status.in_([_PENDING, _RUNNING]))
            .group_by(c.job_id, c.job_key)
            .order_by(self._code_point_order(c.job_key), c.job_id)
        )
        with self._tx("job_queues", write=False) as conn:
            rows = conn.execute(query).all()
        return [
            JobQueue(
                job_id=job_id,
                job_key=key,
                pending=int(n_pending),
                due=int(n_due),
                running=int(n_running),
                oldest_due_at=oldest,
            )
            for job_id, key, n_pending, n_due, n_running, oldest in rows
        ]


def _outcome_params(outcome: Outcome) -> dict[str, Any]:
    params = {f"b_{name}": getattr(outcome, name) for name in OUTCOME_COLUMNS}
    params["b_status"] = ExecutionStatus(outcome.status).value
    params["b_id"] = outcome.execution_id
    params["b_owner"] = outcome.owner
    return params
