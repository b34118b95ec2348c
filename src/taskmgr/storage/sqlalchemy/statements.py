"""The statements of the hot path (claims, outcomes, the next due time), built once per
tables and dialect, and the SQL form of the rules they share.

A statement object reused with bound parameters skips SQLAlchemy's per-call
construction and cache-key generation (the compiled form is cached by the engine).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from taskmgr.core.models import ExecutionStatus, JobState
from taskmgr.storage.sqlalchemy.tables import Tables

__all__ = [
    "OUTCOME_COLUMNS",
    "Statements",
    "active_counts",
    "active_group_counts",
    "active_run",
    "full_groups",
    "full_jobs",
    "outcome_arrays",
    "statements",
]

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


def active_run(executions: sa.FromClause) -> sa.ColumnElement[bool]:
    """The rule :func:`taskmgr.core.rules.is_active_run` as a SQL condition on
    ``executions``: a run counts against ``max_instances`` if it is running, or pending
    and not queued. Every statement that counts active runs uses this one clause."""
    c = executions.c
    return sa.or_(c.status == _RUNNING, sa.and_(c.status == _PENDING, c.queued.is_(False)))


def full_groups(tables: Tables) -> sa.Select[Any]:
    """The ``(job_id, concurrency_value)`` groups of the jobs that have a
    ``concurrency_key`` whose active runs (:func:`active_run`) number ``max_instances``
    or more: their queued runs cannot start now."""
    jobs, active = tables.jobs, tables.executions.alias("group_run")
    a = active.c
    return (
        sa.select(a.job_id, a.concurrency_value)
        .join(jobs, jobs.c.id == a.job_id)
        .where(
            jobs.c.concurrency_key.is_not(None),
            a.concurrency_value.is_not(None),
            active_run(active),
        )
        .group_by(a.job_id, a.concurrency_value, jobs.c.max_instances)
        .having(sa.func.count() >= jobs.c.max_instances)
    )


def full_jobs(tables: Tables) -> sa.Select[Any]:
    """The ids of the jobs without a ``concurrency_key`` whose active runs
    (:func:`active_run`) number ``max_instances`` or more: their queued runs cannot
    start now."""
    jobs, active = tables.jobs, tables.executions.alias("job_run")
    a = active.c
    return (
        sa.select(a.job_id)
        .join(jobs, jobs.c.id == a.job_id)
        .where(jobs.c.concurrency_key.is_(None), active_run(active))
        .group_by(a.job_id, jobs.c.max_instances)
        .having(sa.func.count() >= jobs.c.max_instances)
    )


class Statements:
    """The hot path's statements for one set of tables on one dialect (see the module
    docstring)."""

    def __init__(self, tables: Tables, *, sqlite: bool) -> None:
        jobs, executions = tables.jobs, tables.executions
        j, c = jobs.c, executions.c

        def lock(query: sa.Select[Any], *, skip_locked: bool = True) -> sa.Select[Any]:
            return query if sqlite else query.with_for_update(skip_locked=skip_locked)

        ids: sa.BindParameter[Any] = sa.bindparam("b_ids", expanding=True)
        limit = sa.bindparam("b_limit", type_=sa.Integer)
        self.due_jobs = lock(
            sa.select(jobs)
            .where(j.state == JobState.ACTIVE.value, j.next_run_at <= sa.bindparam("b_due"))
            .order_by(j.next_run_at)
            .limit(limit)
        )
        # A queued run of a full job or group is not read: it could not start, and a
        # backlog of one busy job (a backfill, a catch-up) or group would fill the limit
        # and keep the others' runs waiting. Runs that are not queued never evaluate the
        # tests (and their subqueries are only run once a queued run is met).
        waiting_for_group = sa.tuple_(c.job_id, c.concurrency_value).in_(full_groups(tables))
        waiting_for_job = c.job_id.in_(full_jobs(tables))
        pending = (
            c.status == _PENDING,
            c.due_at <= sa.bindparam("b_now"),
            sa.or_(
                c.queued.is_(False),
                sa.and_(
                    ~waiting_for_job,
                    sa.or_(c.concurrency_value.is_(None), ~waiting_for_group),
                ),
            ),
        )
        self.due_pending = lock(
            sa.select(executions).where(*pending).order_by(c.due_at).limit(limit)
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
        i, p = tables.instances.c, tables.pauses.c
        # Read with the owner's status, at no extra round trip: whether a pause is
        # stored or a job's pause has run out (then the claim reads the pauses).
        pausing = sa.or_(
            sa.exists(sa.select(p.scope)),
            sa.exists(sa.select(j.id).where(j.paused_until <= sa.bindparam("b_now"))),
        ).label("pausing")
        # ... and whether a maintenance window is stored (then the claim reads them)
        windowing = sa.exists(sa.select(tables.windows.c.name)).label("windowing")
        self.instance_status = sa.select(i.status, pausing, windowing).where(
            i.id == sa.bindparam("b_owner")
        )
        # the same, with the database's clock (PostgreSQL: a claim capped at it)
        self.instance_status_at = sa.select(
            i.status, pausing, sa.func.clock_timestamp(), windowing
        ).where(i.id == sa.bindparam("b_owner"))
        self.pausing = sa.select(pausing)
        self.database_now = sa.select(sa.func.clock_timestamp())
        if not sqlite:
            instances = tables.instances
            self.instance_status = self.instance_status.with_for_update(read=True, of=instances)
            self.instance_status_at = self.instance_status_at.with_for_update(
                read=True, of=instances
            )
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
        next_resume = sa.select(sa.func.min(j.paused_until)).scalar_subquery()
        #: ``(first job, first pending run, first job resume, a window is stored)``
        self.next_due = sa.select(next_job, next_pending, next_resume, windowing)
        #: A queued run due by now (an idle poll's second question, see next_claim_at):
        #: a range of the (status, due_at) index that holds only queued runs then.
        self.queued_due = (
            sa.select(c.id)
            .where(c.status == _PENDING, c.due_at <= sa.bindparam("b_now"), c.queued.is_(True))
            .limit(1)
        )
        # -- while queues or the service are paused (see PausedStatements) --
        self.paused = PausedStatements(tables, lock, next_resume, pending)
        self.paused.next_due = self.paused.next_due.add_columns(windowing)
        self.active_counts = (
            sa.select(c.job_id, sa.func.count())
            .where(c.job_id.in_(ids), active_run(executions))
            .group_by(c.job_id)
        )
        self.active_group_counts = (
            sa.select(c.job_id, c.concurrency_value, sa.func.count())
            .where(c.job_id.in_(ids), active_run(executions))
            .group_by(c.job_id, c.concurrency_value)
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
        #: PostgreSQL: every outcome of a batch in one statement, from one array per
        #: column (see :func:`outcome_arrays`); None on SQLite, whose executemany of
        #: ``outcome_update`` costs no round trips.
        self.outcome_update_all = None if sqlite else _outcome_update_all(executions)
        #: Deferred runs, leaving out one whose job already holds its idempotency key
        #: (waiting, on PostgreSQL, for a concurrent insert of that key to end).
        keyed_insert = sqlite_insert(executions) if sqlite else postgresql.insert(executions)
        self.insert_unless_keyed = keyed_insert.on_conflict_do_nothing(
            index_elements=["job_id", "idempotency_key"]
        )
        #: PostgreSQL: one deferred run in one statement (see :func:`_defer_one`).
        self.defer_one = None if sqlite else _defer_one(tables)
        pending_row = sa.and_(c.id == sa.bindparam("b_id"), c.status == _PENDING)
        # One statement for every start of a claim (they share owner and time): a
        # per-row executemany costs a round trip per run on PostgreSQL.
        self.start_pending = (
            sa.update(executions)
            .where(c.id.in_(ids), c.status == _PENDING)
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


class PausedStatements:
    """The claim's reads while queues or the service are paused: the jobs they hold
    (``b_service``, the service is paused; ``b_queues``, the paused queues) start
    nothing: their due one-shot jobs are not read (they keep their slot), their pending
    runs are not read (they wait), and neither counts as due work."""

    def __init__(
        self,
        tables: Tables,
        lock: Callable[[sa.Select[Any]], sa.Select[Any]],
        next_resume: sa.ScalarSelect[Any],
        pending: Sequence[sa.ColumnElement[bool]],
    ) -> None:
        jobs, executions = tables.jobs, tables.executions
        j, c = jobs.c, executions.c
        queues: sa.BindParameter[Any] = sa.bindparam("b_queues", expanding=True)
        service = sa.bindparam("b_service", type_=sa.Boolean)
        in_paused_queue = sa.and_(j.queue.is_not(None), j.queue.in_(queues))
        one_shot = j.trigger["type"].as_string() == "date"
        self.due_jobs = lock(
            sa.select(jobs)
            .where(
                j.state == JobState.ACTIVE.value,
                j.next_run_at <= sa.bindparam("b_due"),
                ~sa.and_(one_shot, sa.or_(service, in_paused_queue)),
            )
            .order_by(j.next_run_at)
            .limit(sa.bindparam("b_limit", type_=sa.Integer))
        )
        not_held = c.job_id.not_in(sa.select(j.id).where(in_paused_queue))
        self.due_pending = lock(
            sa.select(executions)
            .where(*pending, not_held)
            .order_by(c.due_at)
            .limit(sa.bindparam("b_limit", type_=sa.Integer))
        )
        next_job = (
            sa.select(sa.func.min(j.next_run_at))
            .where(j.state == JobState.ACTIVE.value, sa.not_(in_paused_queue))
            .scalar_subquery()
        )
        next_pending = (
            sa.select(sa.func.min(c.due_at))
            .where(c.status == _PENDING, c.queued.is_(False), not_held)
            .scalar_subquery()
        )
        #: ``(first job, first pending run, first job resume)`` with queues paused.
        self.next_due = sa.select(next_job, next_pending, next_resume)


def _same(value: Any) -> Any:
    return value


#: The array type of each column an outcome writes, and how a value goes into it.
_OUTCOME_ARRAYS: dict[str, tuple[sa.types.TypeEngine[Any], Callable[[Any], Any]]] = {
    "id": (sa.Text(), str),
    "owner": (sa.Text(), str),
    "status": (sa.Text(), str),
    "started_at": (sa.DateTime(timezone=True), _same),
    "completed_at": (sa.DateTime(timezone=True), _same),
    "duration_ms": (sa.BigInteger(), _same),
    "error_type": (sa.Text(), _same),
    "error_message": (sa.Text(), _same),
    "traceback": (sa.Text(), _same),
    # JSON text (None stays SQL NULL, as the column's none_as_null says)
    "result_summary": (sa.Text(), lambda value: None if value is None else json.dumps(value)),
}


def _outcome_update_all(executions: sa.Table) -> sa.Update:
    """``UPDATE executions SET ... FROM unnest(:ids, :owners, ...) AS o WHERE id = o.id
    AND owner = o.owner AND status = 'running'``: the fence of ``outcome_update``, per row."""
    c = executions.c
    names = list(_OUTCOME_ARRAYS)
    arrays = [
        sa.bindparam(f"a_{name}", type_=postgresql.ARRAY(kind))
        for name, (kind, _) in _OUTCOME_ARRAYS.items()
    ]
    rows = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="outcome")
    o = rows.c
    values: dict[str, Any] = {name: o[name] for name in OUTCOME_COLUMNS}
    values["result_summary"] = sa.cast(o.result_summary, c.result_summary.type)
    return (
        sa.update(executions)
        .where(c.id == o.id, c.owner == o.owner, c.status == _RUNNING)
        .values(values)
    )


def _defer_one(tables: Tables) -> sa.Insert:
    """``WITH job AS (SELECT ... FOR KEY SHARE) INSERT ... SELECT ... FROM job ON CONFLICT
    DO NOTHING RETURNING id``: the run (``v_<column>``) is inserted only while its job
    (``b_job_id``) is at ``b_version``, and the job's row notifies ``b_channel``."""
    jobs, table = tables.jobs, tables.executions
    notified = sa.func.pg_notify(sa.bindparam("b_channel", type_=sa.Text), "")
    job = (
        sa.select(jobs.c.id, sa.cast(notified, sa.Text).label("n"))
        .where(jobs.c.id == sa.bindparam("b_job_id"), jobs.c.version == sa.bindparam("b_version"))
        .with_for_update(read=True, key_share=True)
        .cte("deferred_job")
    )
    names = [column.name for column in table.c]
    row: list[Any] = [sa.bindparam(f"v_{name}", type_=table.c[name].type) for name in names]
    # "n" is selected so the notification is certainly sent (only with the row)
    source = sa.select(*row).select_from(job).where(job.c.n.is_not(None))
    return (
        postgresql.insert(table)
        .from_select(names, source)
        .on_conflict_do_nothing(index_elements=["job_id", "idempotency_key"])
        .returning(table.c.id)
    )


def outcome_arrays(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of ``outcome_update_all`` for ``rows`` (the parameters of
    ``outcome_update``, ``b_<column>``): one list per column."""
    return {
        f"a_{name}": [convert(row[f"b_{name}"]) for row in rows]
        for name, (_, convert) in _OUTCOME_ARRAYS.items()
    }


_statements: weakref.WeakKeyDictionary[Tables, dict[bool, Statements]] = weakref.WeakKeyDictionary()


def statements(tables: Tables, *, sqlite: bool) -> Statements:
    """The statements for ``tables`` on SQLite or PostgreSQL, built on first use."""
    by_dialect = _statements.get(tables)
    if by_dialect is None:
        by_dialect = _statements.setdefault(tables, {})
    built = by_dialect.get(sqlite)
    if built is None:
        built = by_dialect[sqlite] = Statements(tables, sqlite=sqlite)
    return built


def active_counts(conn: Connection, sql: Statements, job_ids: Sequence[int]) -> dict[int, int]:
    """Executions counted against ``max_instances`` (see :func:`active_run`), per job id
    in ``job_ids`` (0 for a job with none)."""
    if not job_ids:
        return {}
    rows = conn.execute(sql.active_counts, {"b_ids": list(job_ids)})
    counts = dict.fromkeys(job_ids, 0)
    counts.update({job_id: count for job_id, count in rows})  # noqa: C416
    return counts


def active_group_counts(
    conn: Connection, sql: Statements, job_ids: Sequence[int]
) -> dict[tuple[int, str | None], int]:
    """Executions counted against ``max_instances`` per ``(job_id, concurrency_value)``
    of the jobs ``job_ids`` (groups without one are absent)."""
    if not job_ids:
        return {}
    rows = conn.execute(sql.active_group_counts, {"b_ids": list(job_ids)})
    return {(job_id, value): count for job_id, value, count in rows}
