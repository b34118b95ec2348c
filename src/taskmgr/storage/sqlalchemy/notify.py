"""Change notifications between processes on PostgreSQL (``LISTEN``/``NOTIFY``).

Writers send ``NOTIFY <channel>`` inside their transaction, so it is delivered at
commit. Each subscribed process keeps one dedicated connection listening; on any
error it reconnects with backoff. Notifications only shorten the wait: every
instance still polls, so a lost notification delays work by one poll at most.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskmgr.settings import redact_text

__all__ = ["ChangeListener", "channel_name", "notify_column", "send_notify"]

logger = logging.getLogger("taskmgr.storage")

_MAX_BACKOFF = 10.0


def channel_name(prefix: str, schema: str | None) -> str:
    """One channel per schema and prefix (an identifier: at most 63 characters)."""
    scope = f"{schema or ''}.{prefix}"
    return f"{prefix}changes_{zlib.crc32(scope.encode()):08x}"


def notify_column(channel: str) -> sa.ColumnElement[Any]:
    """``pg_notify(channel, '')``: a column that notifies, to add to a query."""
    return sa.func.pg_notify(channel, "")


def send_notify(conn: Connection, channel: str) -> None:
    conn.execute(sa.select(notify_column(channel)))


class ChangeListener:
    """A thread that LISTENs on ``channel`` and calls every subscriber per notification
    burst."""

    def __init__(self, engine: Engine, channel: str) -> None:
        self._engine = engine
        self._channel = channel
        self._subscribers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="taskmgr-listen", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.5
            except Exception as exc:
                logger.warning(
                    "change listener lost its connection (%s); reconnecting in %.1fs",
                    redact_text(str(exc)),
                    backoff,
                )
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _listen(self) -> None:
        raw = self._engine.raw_connection()
        pg: Any = raw.driver_connection
        raw.detach()  # a connection of its own, outside the pool
        try:
            pg.rollback()  # the pool's ping may have opened a transaction
            pg.autocommit = True
            pg.execute(f'LISTEN "{self._channel}"')
            self._deliver()  # changes made while we were not listening
            while not self._stop.is_set():
                # psycopg yields notifications as they come; the timeout bounds how long
                # a stop request waits
                burst = False
                for _ in pg.notifies(timeout=0.5, stop_after=64):
                    burst = True
                if burst:
                    self._deliver()
        finally:
            raw.close()

    def _deliver(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback()
            except Exception:
                logger.exception("change subscriber failed")
