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
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from taskmgr.core.models import InstanceStatus
from taskmgr.storage.base import Claimed, Planner
from taskmgr.storage.inputs import checked_limit, utc
from taskmgr.storage.sqlalchemy.audit import AuditOperations
from taskmgr.storage.sqlalchemy.claim import ClaimApplier
from taskmgr.storage.sqlalchemy.database import DEFAULT_URL
from taskmgr.storage.sqlalchemy.deferrals import DeferralOperations
from taskmgr.storage.sqlalchemy.executions import ExecutionOperations
from taskmgr.storage.sqlalchemy.instances import InstanceOperations
from taskmgr.storage.sqlalchemy.jobs import JobOperations

__all__ = ["DEFAULT_URL", "SQLAlchemyStorage"]

_NOBODY = object()


class SQLAlchemyStorage(
    JobOperations,
    ExecutionOperations,
    DeferralOperations,
    InstanceOperations,
    AuditOperations,
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
    ) -> list[Claimed]:
        now = utc(now, "now")
        checked_limit(limit)
        sql = self._statements()
        self._hint().__dict__.pop("next_due", None)
        with self._tx("claim") as conn:
            # A shared lock on our own row: the reaper cannot declare us dead between
            # this check and our commit.
            if not cap_at_database_now:
                status = conn.execute(sql.instance_status, {"b_owner": owner}).scalar()
            else:
                status, now = self._status_and_now(conn, owner, now)
            if status is not None and status != InstanceStatus.RUNNING.value:
                return []
            applier = ClaimApplier(
                conn, self.tables, sql, sqlite=self._sqlite, now=now, owner=owner
            )
            claimed = applier.run(limit, planner)
            if len(claimed) < limit:
                # what next_due_at() would read right after this claim, read in its
                # transaction instead of a new one (see take_next_due_hint)
                self._hint().next_due = self._read_next_due(conn)
        return claimed

    def _status_and_now(
        self, conn: Connection, owner: str, now: datetime
    ) -> tuple[str | None, datetime]:
        """The owner's status and the earlier of ``now`` and the database's clock, read
        in the claim's first statement (PostgreSQL; SQLite's clock is the host's)."""
        sql = self._statements()
        if self._sqlite:
            status = conn.execute(sql.instance_status, {"b_owner": owner}).scalar()
            return status, min(now, self.database_now())  # no query: the host's clock
        row = conn.execute(sql.instance_status_at, {"b_owner": owner}).one_or_none()
        if row is None:  # no instance row (yet): the clock alone
            return None, min(now, conn.execute(sql.database_now).scalar_one().astimezone(UTC))
        return row[0], min(now, row[1].astimezone(UTC))

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
            return self._read_next_due(conn)

    def _read_next_due(self, conn: Connection) -> datetime | None:
        first_job, first_pending = conn.execute(self._statements().next_due).one()
        times = [t for t in (first_job, first_pending) if t is not None]
        return min(times, default=None)
