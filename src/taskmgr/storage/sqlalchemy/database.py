"""The SQL backend's connection to its database: URL or engine, tables, schema check,
transactions, row locks, change notifications and the database's clock.

:class:`Database` is the base that the backend's operations (:mod:`.jobs`,
:mod:`.executions`, :mod:`.instances`) are written against; :mod:`.store` composes
them into ``SQLAlchemyStorage``. Every operation is one short transaction from
:meth:`Database._tx`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskmgr.exceptions import (
    DataRejectedError,
    InvalidInputError,
    ServiceStateError,
    StorageError,
    TaskmgrError,
    TransactionTimedOutError,
)
from taskmgr.settings import redact_url
from taskmgr.storage.base import Storage
from taskmgr.storage.sqlalchemy import migrate
from taskmgr.storage.sqlalchemy.engine import (
    DEFAULT_MAX_CONNECTIONS,
    create_engine,
    describe_error,
)
from taskmgr.storage.sqlalchemy.notify import ChangeListener, channel_name, send_notify
from taskmgr.storage.sqlalchemy.statements import Statements, statements
from taskmgr.storage.sqlalchemy.tables import Tables, build_tables
from taskmgr.storage.sqlalchemy.urls import engine_url, url_of

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DEFAULT_URL", "Database", "retried_once_if_timed_out"]

logger = logging.getLogger("taskmgr.storage")

#: PostgreSQL's SQLSTATE for a session ended by ``idle_in_transaction_session_timeout``.
IDLE_IN_TRANSACTION_TIMEOUT = "25P03"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def retried_once_if_timed_out(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a storage command again, once, when the database ended its transaction for
    idling too long between statements (:class:`TransactionTimedOutError`).

    The timeout protects the database from a process that froze while holding locks;
    a command of a process starved of CPU for a few seconds is caught by it too. The
    ended transaction wrote nothing, and the command runs again from its first
    statement, so its checks see the database as it is now. For the commands a user
    or the code sync issues; the scheduler's own transactions are retried by the loop.
    """

    @functools.wraps(method)
    def retrying(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except TransactionTimedOutError as exc:
            logger.warning("%s; running it again", exc)
            return method(*args, **kwargs)

    return retrying


DEFAULT_URL = "sqlite:///taskmgr.db"
_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,19}")


class Database(Storage):
    """A storage's tables on one database, and how to run a transaction on them (the
    constructor's parameters are described on ``SQLAlchemyStorage``)."""

    def __init__(
        self,
        url: str | sa.URL | None = None,
        *,
        engine: Engine | AsyncEngine | None = None,
        table_prefix: str = "taskmgr_",
        schema: str | None = None,
        auto_migrate: bool = False,
        max_connections: int | None = None,
    ) -> None:
        if url is not None and engine is not None:
            raise ValueError("pass either url or engine, not both")
        if _PREFIX.fullmatch(table_prefix) is None:
            raise ValueError(
                f"table_prefix {table_prefix!r} must be 1-20 characters: a lowercase letter, "
                "then lowercase letters, digits or '_'"
            )
        if engine is not None and not isinstance(engine, Engine):
            # the host's AsyncEngine: its URL, on an engine of taskmgr's own (its pool
            # belongs to the host's event loop; taskmgr connects from its own threads)
            url, engine = url_of(engine), None
        if engine is not None and max_connections is not None:
            raise InvalidInputError(
                "a given engine is used as it is: size its pool when you create it",
                field="max_connections",
            )
        self._url = url or os.environ.get("TASKMGR_DATABASE_URL") or DEFAULT_URL
        self._given_engine = engine
        self._max_connections = _checked_max(
            DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
        )
        # One connection LISTENs on PostgreSQL, unless the instance may have only one.
        self._listens = engine is not None or self._max_connections > 1
        if engine is None:
            _check_url(self._url)
        self._engine: Engine | None = None
        self._prefix = table_prefix
        self._schema = schema
        self.auto_migrate = auto_migrate
        self.tables: Tables = build_tables(table_prefix, schema)
        self._sqlite = False
        self._open_lock = threading.Lock()
        # SQLite has one writer at a time; queueing this process's writers here is
        # cheaper than letting them spin in SQLite's busy handler.
        self._write_lock = threading.Lock()
        # per thread: the next due time read at the end of that thread's last claim
        self._next_due_hints = threading.local()
        self._channel = channel_name(table_prefix, schema)
        self._listener: ChangeListener | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ServiceStateError("the storage is not open: call open() first")
        return self._engine

    def __repr__(self) -> str:
        return f"SQLAlchemyStorage({self._safe_url()!r})"

    def describe(self) -> dict[str, Any]:
        return {
            "storage": "sqlalchemy",
            "database_url": self._safe_url(),
            "table_prefix": self._prefix,
            "db_schema": self._schema,
            "auto_migrate": self.auto_migrate,
            "max_connections": self.max_connections,
        }

    @property
    def max_connections(self) -> int | None:
        """The most connections this storage opens to its database, the PostgreSQL
        ``LISTEN`` connection included (None: a given engine, sized by its owner)."""
        return None if self._given_engine is not None else self._max_connections

    @property
    def table_prefix(self) -> str:
        """The prefix of the table names (``<prefix>jobs``, ...)."""
        return self._prefix

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema holding the tables (None: the connection's default)."""
        return self._schema

    def _safe_url(self) -> str:
        """The URL without its secrets (:func:`taskmgr.settings.redact_url`)."""
        if self._given_engine is not None:
            return redact_url(self._given_engine.url)
        return redact_url(self._url)

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        with self._open_lock:
            if self._engine is not None:
                return
            try:
                engine = self._given_engine or create_engine(self._url, pool_size=self._pool_size())
            except TaskmgrError:
                raise
            except sa.exc.SQLAlchemyError as exc:
                raise StorageError(
                    f"cannot use database URL {self._safe_url()!r}: {describe_error(exc)}"
                ) from exc
            except ValueError as exc:  # e.g. a port that is not a number: its text may
                # be part of a password, so it is not repeated
                raise StorageError(f"cannot use database URL {self._safe_url()!r}") from exc
            try:
                migrate.prepare(engine, self._prefix, self._schema, auto_migrate=self.auto_migrate)
            except BaseException:
                if self._given_engine is None:
                    engine.dispose()
                raise
            self._sqlite = engine.dialect.name == "sqlite"
            self._engine = engine

    def _pool_size(self) -> int:
        """The connections of the pool: all but the ``LISTEN`` one."""
        listener = self._listens and _backend(self._url) not in ("sqlite", None)
        return self._max_connections - (1 if listener else 0)

    def close(self) -> None:
        with self._open_lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            engine, self._engine = self._engine, None
            if engine is not None and self._given_engine is None:
                engine.dispose()

    def after_fork(self) -> None:
        # A forked child must not use (or close) the parent's pooled connections, and a
        # lock another thread of the parent held at fork time would never be released.
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._listener = None
        if self._engine is not None:
            self._engine.dispose(close=False)

    @contextmanager
    def _tx(self, what: str, *, write: bool = True) -> Iterator[Connection]:
        """One transaction; commits when the block ends without an exception."""
        engine = self.engine
        sqlite = self._sqlite
        try:
            with self._write_lock if sqlite and write else nullcontext(), engine.connect() as conn:
                if sqlite:
                    # Take the write lock up front: a deferred transaction that reads and
                    # then writes can fail with SQLITE_BUSY without waiting.
                    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.commit()
        except TaskmgrError:
            raise
        except sa.exc.DataError as exc:
            raise DataRejectedError(f"{what} failed: {describe_error(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == IDLE_IN_TRANSACTION_TIMEOUT:
                raise TransactionTimedOutError(f"{what} failed: {describe_error(exc)}") from exc
            raise StorageError(f"{what} failed: {describe_error(exc)}") from exc

    def _lock(self, query: sa.Select[Any], *, skip_locked: bool = False) -> sa.Select[Any]:
        if self._sqlite:
            return query  # BEGIN IMMEDIATE already holds the database's write lock
        return query.with_for_update(skip_locked=skip_locked)

    def _changed(self, conn: Connection) -> None:
        """Tell listening processes (delivered when the transaction commits)."""
        if not self._sqlite:
            send_notify(conn, self._channel)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self._sqlite or not self._listens:
            # SQLite has no cross-process signal; one connection in all leaves none to
            # LISTEN on: polling (every poll_interval)
            return super().subscribe(callback)
        with self._open_lock:
            if self._listener is None:
                self._listener = ChangeListener(self.engine, self._channel)
            listener = self._listener
        return listener.subscribe(callback)

    def schema_current(self) -> bool:
        return migrate.is_current(self.engine, self._prefix, self._schema)

    def database_now(self) -> datetime:
        if self._sqlite:
            return super().database_now()  # an embedded database: the host's clock
        with self._tx("database_now", write=False) as conn:
            value = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    # -- for the operations ---------------------------------------------------------

    def _statements(self) -> Statements:
        """The hot path's statements, built once for these tables and this dialect."""
        return statements(self.tables, sqlite=self._sqlite)

    @property
    def sqlite(self) -> bool:
        """Whether the database is SQLite (known once open)."""
        return self._sqlite

    def _code_point_order(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """``column`` compared by code point, whatever the database's collation (the
        order the contract promises for text): SQLite compares text that way already,
        PostgreSQL is told to (``COLLATE "C"``)."""
        return column if self._sqlite else column.collate("C")


def _checked_max(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"must be an integer >= 1, got {value!r}", field="max_connections")
    return value


def _check_url(url: str | sa.URL) -> None:
    """Refuse an async URL taskmgr cannot translate now, not at open (a URL that does
    not parse is reported by open(), with the driver's reason)."""
    try:
        engine_url(url)
    except TaskmgrError:
        raise
    except (sa.exc.ArgumentError, ValueError):
        pass


def _backend(url: str | sa.URL) -> str | None:
    """``sqlite``, ``postgresql``, ...; None for a URL that does not parse (open()
    reports it)."""
    try:
        return sa.make_url(url).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):
        return None
