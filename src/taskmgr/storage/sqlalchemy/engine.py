"""Engines configured the way taskmgr relies on.

PostgreSQL: bounded lock waits and idle-in-transaction sessions (below).

SQLite: WAL (readers never block the writer), a busy timeout (writers wait instead of
failing), ``synchronous=NORMAL`` (durable at checkpoints, fast commits) and the
driver's own transaction handling off, so taskmgr can open write transactions with
``BEGIN IMMEDIATE`` and use SAVEPOINTs that really nest.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = [
    "POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS",
    "POSTGRES_LOCK_TIMEOUT_MS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "describe_error",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: PostgreSQL: a session idle inside a transaction this long (its process froze, or
#: lost the network, in the middle of a claim) is ended by the server, so its row
#: locks never hold up the reaper or the other instances for long. Well below the
#: default heartbeat timeout (15 s): a frozen process is fenced out before it is
#: declared dead.
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
#: PostgreSQL: no statement waits longer than this for a row lock; the caller (loop,
#: reaper, outcome writer) logs and retries.
POSTGRES_LOCK_TIMEOUT_MS = 5_000


def create_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` plus taskmgr's settings (``pool_pre_ping``, and the
    SQLite pragmas above). Extra keyword arguments go to SQLAlchemy."""
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _configure_postgres)
    return engine


def _configure_postgres(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(
            f"SET idle_in_transaction_session_timeout = {POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
        )
        cursor.execute(f"SET lock_timeout = {POSTGRES_LOCK_TIMEOUT_MS}")
    dbapi_connection.commit()


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # None = autocommit mode: pysqlite stops issuing its own (deferred) BEGIN, so the
    # BEGIN IMMEDIATE / BEGIN that taskmgr emits is the one in effect.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def describe_error(exc: sa.exc.SQLAlchemyError) -> str:
    """The first line of the driver's message: what went wrong, without SQLAlchemy's
    statement dump and documentation link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _switch_to_wal(cursor: Any) -> None:
    # Switching a new database to WAL needs a moment of exclusive access, and SQLite
    # answers "database is locked" at once instead of using the busy handler: when
    # several processes open a new file together, retry for as long as the busy
    # timeout would have waited.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
