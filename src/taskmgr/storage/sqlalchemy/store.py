"""``SQLAlchemyStorage``: the storage contract on SQLite and PostgreSQL.

Every method is one short transaction. Claims take row locks without waiting
(``FOR UPDATE SKIP LOCKED``) on PostgreSQL and the database write lock
(``BEGIN IMMEDIATE``) on SQLite, so what a claim reads stays true until it commits:
the compare-and-set on ``next_run_at`` is decided on the locked row and written with
the same condition, and the unique slot key backs it up. Work is set-based: a claim
costs a fixed number of statements however many slots it carries.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.enums import PauseScope
from taskmgr.core.models import InstanceStatus
from taskmgr.core.pauses import Pause
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.base import Claimed, Planner
from taskmgr.storage.inputs import checked_limit, checked_lookahead, utc
from taskmgr.storage.sqlalchemy.audit import AuditOperations
from taskmgr.storage.sqlalchemy.claim import ClaimApplier
from taskmgr.storage.sqlalchemy.database import DEFAULT_URL
from taskmgr.storage.sqlalchemy.deferrals import DeferralOperations
from taskmgr.storage.sqlalchemy.executions import ExecutionOperations
from taskmgr.storage.sqlalchemy.failures import FailureOperations
from taskmgr.storage.sqlalchemy.incidents import IncidentOperations
from taskmgr.storage.sqlalchemy.instances import InstanceOperations
from taskmgr.storage.sqlalchemy.jobs import JobOperations
from taskmgr.storage.sqlalchemy.pauses import PauseOperations, pause_from_row
from taskmgr.storage.sqlalchemy.windows import (
    WindowOperations,
    next_job_after_holds,
    read_windows,
)

__all__ = ["DEFAULT_URL", "SQLAlchemyStorage"]

_NOBODY = object()


class SQLAlchemyStorage(
    JobOperations,
    ExecutionOperations,
    FailureOperations,
    DeferralOperations,
    InstanceOperations,
    AuditOperations,
    PauseOperations,
    IncidentOperations,
    WindowOperations,
):
    """Jobs, executions, instances and the audit log in SQL tables named
    ``<table_prefix>jobs`` etc.

    :param url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``),
        also in its asyncio forms (``postgresql+asyncpg://...``,
        ``sqlite+aiosqlite:///path.db``): taskmgr's own threads then connect through the
        sync driver of the same database (psycopg, pysqlite), the options translated
        (:mod:`~taskmgr.storage.sqlalchemy.urls`); default: env ``TASKMGR_DATABASE_URL``,
        else ``sqlite:///taskmgr.db``.
    :param engine: use this engine instead (it is left open by :meth:`close`). A sync
        ``Engine`` is used as it is (its pool too);
        :func:`~taskmgr.storage.sqlalchemy.create_engine` makes one with the settings
        taskmgr relies on (SQLite WAL and busy timeout). An ``AsyncEngine`` gives its URL
        only: taskmgr connects with an engine of its own, as from that URL, and never
        touches the host's pool (it belongs to the host's event loop).
    :param max_connections: the most connections this storage opens (default 4), the
        PostgreSQL ``LISTEN`` connection included; with 1 on PostgreSQL nothing
        listens and changes from other processes are seen by polling. Connections
        unused for 10 s are closed down to one (an idle instance on PostgreSQL holds 2:
        one pooled, one listening). Not with a given sync ``engine``.
    :param table_prefix: lowercase, starts with a letter, at most 20 characters.
    :param schema: a PostgreSQL schema for the tables (it must exist).
    :param auto_migrate: on :meth:`open`, upgrade a schema that is behind this taskmgr
        instead of raising :class:`~taskmgr.exceptions.SchemaBehindError`. An empty
        database is always created at the newest revision; one migrated by a newer
        taskmgr is always refused (:class:`~taskmgr.exceptions.SchemaAheadError`).
    """

    # The connection, transactions and locks are in .database; jobs, executions and
    # instances in their own modules. The claim (the hot path) is here.

    def claim(
        self,
        *,
        now: datetime,
        owner: str,
        limit: int,
        planner: Planner,
        cap_at_database_now: bool = False,
        lookahead: float = 0.0,
    ) -> list[Claimed]:
        now = utc(now, "now")
        checked_limit(limit)
        ahead = timedelta(seconds=checked_lookahead(lookahead))
        sql = self._statements()
        self._hint().__dict__.pop("next_due", None)
        with self._tx("claim") as conn:
            # A shared lock on our own row: the reaper cannot declare us dead between
            # this check and our commit.
            if not cap_at_database_now:
                status, pausing, windowing = self._status(conn, owner, now)
            else:
                status, pausing, windowing, now = self._status_and_now(conn, owner, now)
            if status is not None and status != InstanceStatus.RUNNING.value:
                return []
            applier = ClaimApplier(
                conn,
                self.tables,
                sql,
                sqlite=self._sqlite,
                now=now,
                owner=owner,
                pausing=pausing,
                horizon=now + ahead,
                windowing=windowing,
            )
            claimed = applier.run(limit, planner)
            if len(claimed) < limit:
                # what next_due_at() would read right after this claim, read in its
                # transaction instead of a new one (see take_next_due_hint)
                self._hint().next_due = self._read_next_due(conn, applier.pauses, applier.windows)
        return claimed

    def _status(self, conn: Connection, owner: str, now: datetime) -> tuple[str | None, bool, bool]:
        """The owner's status, whether a pause is stored or a job's has run out, and
        whether a maintenance window is stored (all unknown without an instance row:
        then the claim reads the pauses and the windows)."""
        params = {"b_owner": owner, "b_now": now}
        row = conn.execute(self._statements().instance_status, params).one_or_none()
        return (None, True, True) if row is None else (row[0], bool(row[1]), bool(row[2]))

    def _status_and_now(
        self, conn: Connection, owner: str, now: datetime
    ) -> tuple[str | None, bool, bool, datetime]:
        """As :meth:`_status`, and the earlier of ``now`` and the database's clock, read
        in the claim's first statement (PostgreSQL; SQLite's clock is the host's)."""
        sql = self._statements()
        if self._sqlite:
            status, pausing, windowing = self._status(conn, owner, now)
            return status, pausing, windowing, min(now, self.database_now())  # the host's
        params = {"b_owner": owner, "b_now": now}
        row = conn.execute(sql.instance_status_at, params).one_or_none()
        if row is None:  # no instance row (yet): the clock alone
            clock = conn.execute(sql.database_now).scalar_one().astimezone(UTC)
            return None, True, True, min(now, clock)
        return row[0], bool(row[1]), bool(row[3]), min(now, row[2].astimezone(UTC))

    def _hint(self) -> threading.local:
        return self._next_due_hints

    def take_next_due_hint(self) -> tuple[bool, datetime | None]:
        hints = self._hint()
        value = getattr(hints, "next_due", _NOBODY)
        if value is _NOBODY:
            return False, None
        del hints.next_due
        return True, value  # type: ignore[return-value]

    def next_due_at(self) -> datetime | None:
        with self._tx("next_due_at", write=False) as conn:
            return self._next_due_in(conn)

    def next_claim_at(self, *, now: datetime) -> datetime | None:
        now = utc(now, "now")
        # one read-only transaction: no lock taken, nothing written (a claim's shared
        # lock on the instance row makes PostgreSQL write and flush its WAL)
        with self._tx("next_claim_at", write=False) as conn:
            due = self._next_due_in(conn)
            if due is not None and due <= now:
                return due
            queued = conn.execute(self._statements().queued_due, {"b_now": now}).first()
        return now if queued is not None else due

    def _next_due_in(self, conn: Connection) -> datetime | None:
        # every stored pause holds its jobs here; one that ran out is due itself
        stored = conn.execute(sa.select(self.tables.pauses)).mappings().all()
        return self._read_next_due(conn, [pause_from_row(row) for row in stored])

    def _read_next_due(
        self,
        conn: Connection,
        pauses: Sequence[Pause] = (),
        windows: Sequence[MaintenanceWindow] | None = None,
    ) -> datetime | None:
        """The earliest of: a job's next slot, a pending run's due time, a paused job's
        ``until``, leaving out the jobs and runs that ``pauses`` hold; and the ``until``
        of each of ``pauses``. A job's slot a ``defer`` window holds counts when the
        window closes (``windows``: the stored windows; None: read them if any is)."""
        sql = self._statements()
        service = any(p.scope is PauseScope.SERVICE for p in pauses)
        queues = [p.name for p in pauses if p.scope is PauseScope.QUEUE]
        values: tuple[Any, ...]
        if queues and not service:
            values = tuple(conn.execute(sql.paused.next_due, {"b_queues": queues}).one())
        else:
            values = tuple(conn.execute(sql.next_due).one())
        first_job, first_pending, first_resume, windowing = values
        if service:  # nothing starts: only the end of a pause is due
            first_job = first_pending = None
        if windows is None:
            windows = read_windows(conn, self.tables) if windowing else []
        if windows and first_job is not None:
            first_job = next_job_after_holds(
                conn, self.tables, first_job, windows, queues=[q for q in queues if q]
            )
        times = [first_job, first_pending, first_resume, *(p.until for p in pauses)]
        return min((t for t in times if t is not None), default=None)
