"""Change notifications between processes on PostgreSQL (``LISTEN``/``NOTIFY``).

Writers send ``NOTIFY <channel>`` inside their transaction, so it is delivered at
commit. Each subscribed process keeps one dedicated connection listening; on any
error it reconnects with backoff. Notifications only shorten the wait: every
instance still polls, so a lost notification delays work by one poll at most.

The listening thread sleeps in ``select()`` on the connection's socket and on a
socket pair that :meth:`ChangeListener.close` writes to: it wakes only when the
server sends something or the listener stops, and hands each burst of notifications
to the subscribers as soon as it is read (an idle process's listener costs no CPU;
psycopg's ``notifies(timeout=...)`` woke ten times a second and held a burst until
its timeout ran out).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
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
        #: Written to by close() to wake the thread from select() (made with the thread).
        self._waker: tuple[socket.socket, socket.socket] | None = None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
            if self._thread is None:
                self._stop.clear()
                self._waker = socket.socketpair()
                self._thread = threading.Thread(
                    target=self._run, args=(self._waker[0],), name="taskmgr-listen", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
            waker, self._waker = self._waker, None
        if waker is not None:
            with contextlib.suppress(OSError):  # a full buffer: it is awake already
                waker[1].send(b"x")
        if thread is not None:
            thread.join(timeout=5)
        if waker is not None:
            for end in waker:
                end.close()

    def _run(self, waker: socket.socket) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._listen(waker)
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

    def _listen(self, waker: socket.socket) -> None:
        raw = self._engine.raw_connection()
        pg: Any = raw.driver_connection
        raw.detach()  # a connection of its own, outside the pool
        try:
            pg.rollback()  # the pool's ping may have opened a transaction
            pg.autocommit = True
            pg.execute(f'LISTEN "{self._channel}"')
            self._deliver()  # changes made while we were not listening
            with selectors.DefaultSelector() as selector:
                selector.register(pg.fileno(), selectors.EVENT_READ)
                selector.register(waker, selectors.EVENT_READ)
                while not self._stop.is_set():
                    selector.select()  # the server sent something, or close() woke us
                    if self._stop.is_set():
                        return
                    # what the server sent is read now, without waiting for more; a
                    # closed connection raises here (and the listener reconnects)
                    if any(True for _ in pg.notifies(timeout=0)):
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
