"""Engines configured the way taskmgr relies on.

SQLite: WAL (readers never block the writer), a busy timeout (writers wait instead of
failing), ``synchronous=NORMAL`` (durable at checkpoints, fast commits) and the
driver's own transaction handling off, so taskmgr can open write transactions with
``BEGIN IMMEDIATE`` and use SAVEPOINTs that really nest.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "create_engine"]

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` plus taskmgr's settings (``pool_pre_ping``, and the
    SQLite pragmas above). Extra keyword arguments go to SQLAlchemy."""
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # None = autocommit mode: pysqlite stops issuing its own (deferred) BEGIN, so the
    # BEGIN IMMEDIATE / BEGIN that taskmgr emits is the one in effect.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
