"""PostgreSQL statements of a Celery worker's hot path, each one autocommitted statement
(one round trip) instead of a transaction block: taking executions over
(``Storage.take_over_many``) and recording outcomes that carry no retry.

Both lock the execution rows they change in id order first (a ``FOR UPDATE`` CTE), as
every batch write here does, so they cannot deadlock with the reaper or the scheduler.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from taskmgr.core.models import ExecutionStatus, InstanceStatus
from taskmgr.exceptions import DataRejectedError, StorageError, TaskmgrError
from taskmgr.storage.common import JOB_DELETED_BEFORE_START
from taskmgr.storage.records import Claimed
from taskmgr.storage.sqlalchemy.engine import describe_error
from taskmgr.storage.sqlalchemy.rows import execution_from_row, job_from_row
from taskmgr.storage.sqlalchemy.statements import statements
from taskmgr.storage.sqlalchemy.tables import Tables
from taskmgr.storage.task_handover import TakeOver

__all__ = [
    "HandOverStatements",
    "autocommitted",
    "handover_statements",
    "record_all",
    "take_over_all",
]

_RUNNING = ExecutionStatus.RUNNING.value
_CANCELLED = ExecutionStatus.CANCELLED.value
#: The execution's id and the request's ``from_owner`` in the ``taken`` CTE (its owner
#: is the taker's once updated); the job's columns keep their names there.
_ID = "eid"
_FROM = "efrom"


class HandOverStatements:
    """The statements for one set of tables on PostgreSQL, built once."""

    def __init__(self, tables: Tables) -> None:
        self.take_over_all = _take_over_all(tables)
        self.record_all = _record_all(tables)


@contextmanager
def autocommitted(engine: Engine, what: str) -> Iterator[Connection]:
    """A connection whose every statement commits on its own, its errors translated as
    a transaction's are (a value the database refuses: :class:`DataRejectedError`)."""
    try:
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")
    except TaskmgrError:
        raise
    except sa.exc.DataError as exc:
        raise DataRejectedError(f"{what} failed: {describe_error(exc)}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"{what} failed: {describe_error(exc)}") from exc


def _record_all(tables: Tables) -> sa.Update:
    """The batch outcome update (``outcome_update_all``: one array per column, fenced
    per row by id, owner and ``running``), its rows locked in id order first, returning
    the ids it applied to."""
    executions = tables.executions
    c = executions.c
    update = statements(tables, sqlite=False).outcome_update_all
    assert update is not None  # built for PostgreSQL
    ids = sa.bindparam("a_id", type_=postgresql.ARRAY(c.id.type))
    locked = (
        sa.select(c.id)
        .where(c.id == sa.any_(ids), c.status == _RUNNING)
        .order_by(c.id)
        .with_for_update()
        .cte("locked")
    )
    return update.where(c.id.in_(sa.select(locked.c.id))).returning(c.id)


def record_all(conn: Connection, tables: Tables, arrays: Mapping[str, Any]) -> set[str]:
    """Outcomes without retries in one statement on ``conn`` (autocommitted by the
    caller), from ``outcome_arrays``; returns the ids of the executions written."""
    rows = conn.execute(handover_statements(tables).record_all, dict(arrays))
    return {row[0] for row in rows}


def _take_over_all(tables: Tables) -> sa.Update:
    """``WITH taken AS (SELECT ... FOR UPDATE OF executions) UPDATE executions ... FROM
    taken RETURNING ...``: every request (one array per field) is the compare-and-set of
    ``take_over``; an execution whose job is gone is cancelled instead, and returned
    without its job's columns."""
    executions, jobs, instances = tables.executions, tables.jobs, tables.instances
    c, i = executions.c, instances.c
    to_owner = sa.bindparam("b_to", type_=c.owner.type)
    now = sa.bindparam("b_now", type_=c.started_at.type)
    wanted = (
        sa.func.unnest(
            # unbounded types: a message's over-long value compares unequal, as in
            # ``take_over``, instead of being cut to the column's length or refused
            sa.bindparam("a_id", type_=postgresql.ARRAY(sa.Text())),
            sa.bindparam("a_from", type_=postgresql.ARRAY(sa.Text())),
            sa.bindparam("a_attempt", type_=postgresql.ARRAY(sa.BigInteger())),
            sa.bindparam("a_task", type_=postgresql.ARRAY(sa.Text())),
        )
        .table_valued("id", "from_owner", "attempt", "task")
        .render_derived(name="wanted")
    )
    w = wanted.c
    # a shared lock on the taker's row keeps the reaper from declaring it dead between
    # this check and the commit; a taker with no row yet may take over
    taker = sa.select(i.status).where(i.id == to_owner).with_for_update(read=True).scalar_subquery()
    taken = (
        sa.select(c.id.label(_ID), w.from_owner.label(_FROM), *jobs.c)
        .select_from(executions.join(wanted, c.id == w.id).outerjoin(jobs, jobs.c.id == c.job_id))
        .where(
            c.status == _RUNNING,
            c.owner == w.from_owner,
            c.attempt == w.attempt,
            # not started, and this message is the one published for it
            c.started_at.is_(None),
            c.celery_task_id == w.task,
            sa.func.coalesce(taker, _RUNNING) == InstanceStatus.RUNNING.value,
        )
        .order_by(c.id)
        .with_for_update(of=executions)
        .cte("taken")
    )
    t = taken.c
    gone = t.id.is_(None)  # the job's id: no job row
    # read by position: the execution's columns, the request's from_owner, the job's
    return (
        sa.update(executions)
        .where(c.id == t[_ID])
        .values(
            owner=sa.case((gone, c.owner), else_=to_owner),
            started_at=sa.case((gone, c.started_at), else_=now),
            status=sa.case((gone, _CANCELLED), else_=c.status),
            completed_at=sa.case((gone, now), else_=c.completed_at),
            error_message=sa.case((gone, JOB_DELETED_BEFORE_START), else_=c.error_message),
        )
        .returning(*executions.c, t[_FROM], *[t[column.name] for column in jobs.c])
    )


def take_over_all(
    conn: Connection,
    tables: Tables,
    requests: Sequence[TakeOver],
    *,
    to_owner: str,
    now: datetime,
) -> list[Claimed | None]:
    """``Storage.take_over_many`` in one statement on ``conn`` (autocommitted by the
    caller). Requests for the same execution: only the first that matches gets it."""
    statement = handover_statements(tables).take_over_all
    rows = conn.execute(
        statement,
        {
            "a_id": [r.execution_id for r in requests],
            "a_from": [r.from_owner for r in requests],
            "a_attempt": [r.attempt for r in requests],
            "a_task": [r.celery_task_id for r in requests],
            "b_to": to_owner,
            "b_now": now,
        },
    ).all()
    execution_columns = [column.name for column in tables.executions.c]
    job_columns = [column.name for column in tables.jobs.c]
    after = len(execution_columns) + 1  # the job's columns start there
    won: dict[str, Any] = {row[0]: row for row in rows}
    found: list[Claimed | None] = []
    for request in requests:
        row = won.pop(request.execution_id, None)  # a second request for it gets None
        if row is None:
            found.append(None)
            continue
        execution = dict(zip(execution_columns, row, strict=False))
        if (
            execution["celery_task_id"] != request.celery_task_id
            or execution["attempt"] != request.attempt
            or row[after - 1] != request.from_owner
        ):
            won[request.execution_id] = row  # taken over for another of the requests
            found.append(None)
            continue
        job = dict(zip(job_columns, row[after:], strict=True))
        if job["id"] is None:  # cancelled: its job is gone
            found.append(None)
            continue
        found.append(Claimed(execution_from_row(execution), job_from_row(job)))
    return found


_built: weakref.WeakKeyDictionary[Tables, HandOverStatements] = weakref.WeakKeyDictionary()


def handover_statements(tables: Tables) -> HandOverStatements:
    """The statements for ``tables`` (PostgreSQL), built on first use."""
    built = _built.get(tables)
    if built is None:
        built = _built[tables] = HandOverStatements(tables)
    return built
