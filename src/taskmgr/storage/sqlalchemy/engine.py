"""Engines configured the way taskmgr relies on.

Every engine is synchronous (taskmgr's storage runs on its own threads): an asyncio
URL is connected through the sync driver of the same database (:mod:`.urls`). Its pool
is bounded and shrinks when idle (:mod:`.pool`); PostgreSQL connections are named
``taskmgr`` in ``pg_stat_activity`` unless the URL names them.

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

from taskmgr.settings import redact_text
from taskmgr.storage.sqlalchemy.pool import TrimmingPool
from taskmgr.storage.sqlalchemy.urls import engine_url

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "PING_AFTER_IDLE_S",
    "POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS",
    "POSTGRES_LOCK_TIMEOUT_MS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "create_engine",
    "describe_error",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The most connections one taskmgr instance opens to its database, the PostgreSQL
#: ``LISTEN`` connection included (``max_connections``, ``TASKMGR_MAX_CONNECTIONS``).
DEFAULT_MAX_CONNECTIONS = 4
#: PostgreSQL: a session idle inside a transaction this long (its process froze, or
#: lost the network, in the middle of a claim) is ended by the server, so its row
#: locks never hold up the reaper or the other instances for long. Well below the
#: default heartbeat timeout (15 s): a frozen process is fenced out before it is
#: declared dead.
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
#: PostgreSQL: no statement waits longer than this for a row lock; the caller (loop,
#: reaper, outcome writer) logs and retries.
POSTGRES_LOCK_TIMEOUT_MS = 5_000


#: A pooled server connection idle this long is pinged (one round trip) before use,
#: and replaced if the server is gone. One used more recently is trusted: a busy
#: process saves a round trip on every transaction, and a server that restarted in
#: the last two seconds fails that one transaction, which its caller retries (the
#: pool then replaces every connection it holds). Longer than the scheduler's
#: default poll interval (1 s), so an idle instance's polls are not each preceded
#: by a ping: that doubled its transactions.
PING_AFTER_IDLE_S = 2.0


def create_engine(url: str | sa.URL, *, pool_size: int | None = None, **kwargs: Any) -> Engine:
    """``sqlalchemy.create_engine`` plus taskmgr's settings (a ping before using a
    server connection that was idle, see ``PING_AFTER_IDLE_S``; the pragmas and session
    settings above). Extra keyword arguments go to SQLAlchemy; ``pool_pre_ping=`` given
    there replaces taskmgr's ping.

    An asyncio URL (``postgresql+asyncpg://``, ``sqlite+aiosqlite://``) gives an engine
    on the sync driver of the same database (:func:`.urls.engine_url`). With
    ``pool_size``, a file or server database gets a :class:`.pool.TrimmingPool` of
    that size: never more connections, and idle ones closed down to one.

    Statement parameters (job arguments, results, errors) are kept out of SQLAlchemy's
    error messages and logs: ``hide_parameters=True`` unless the caller passes
    ``hide_parameters=False``. A URL whose password holds an unencoded ``@`` is refused
    (SQLAlchemy would take the rest of the password for the host, and show it in the
    connection error).

    :raises sqlalchemy.exc.ArgumentError: the URL does not parse, or its password
        holds an unencoded ``@``.
    :raises taskmgr.exceptions.DatabaseURLError: an async driver or option taskmgr has
        no sync equivalent for.
    """
    own_ping = "pool_pre_ping" not in kwargs
    kwargs.setdefault("hide_parameters", True)
    url = sa.make_url(url)
    if url.host is not None and "@" in url.host:
        raise sa.exc.ArgumentError(
            "the URL's password (or user name) holds an unencoded '@': write it as %40"
        )
    target = engine_url(url)
    url = target.url
    if target.connect_args:
        kwargs["connect_args"] = {**target.connect_args, **kwargs.get("connect_args", {})}
    dialect: Any = url.get_dialect()
    if pool_size is not None and dialect.get_pool_class(url) is sa.QueuePool:
        # not an in-memory SQLite database: its data lives in its one connection
        kwargs.update(poolclass=TrimmingPool, pool_size=pool_size)
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        return engine  # a file: nothing to ping
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _configure_postgres)
    if own_ping:
        event.listen(engine, "connect", _note_use)
        event.listen(engine, "checkin", _note_use)
        event.listen(engine, "checkout", _pinger(engine.dialect))
    return engine


def _note_use(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["taskmgr_last_use"] = time.monotonic()


def _pinger(dialect: sa.Dialect) -> Any:
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("taskmgr_last_use")
        if last is not None and time.monotonic() - last < PING_AFTER_IDLE_S:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # the pool drops this connection and checks out (or opens) another
            raise sa.exc.DisconnectionError(str(exc)) from exc
        if not alive:
            raise sa.exc.DisconnectionError("the connection did not answer a ping")
        record.info["taskmgr_last_use"] = time.monotonic()

    return ping_if_idle


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
    statement dump and documentation link, any URL or ``password=`` in it redacted
    (:func:`taskmgr.settings.redact_text`)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return redact_text(text.splitlines()[0]) if text else type(exc).__name__


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
