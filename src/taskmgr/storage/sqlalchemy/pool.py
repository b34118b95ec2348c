"""The connection pool of taskmgr's own engines: bounded, and small when idle.

A :class:`~sqlalchemy.pool.QueuePool` that never opens more than its size (no
overflow: a thread wanting a connection while all are in use waits for one), hands
out the most recently used connection first (LIFO), and closes connections left
unused for ``idle_timeout`` seconds, down to ``keep_idle``. An instance opens what its
threads need at once (the scheduler loop, the outcome writer, the heartbeat, a host's
calls) and, once the burst is over, goes back to the one connection its loop and
heartbeat take turns on.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

__all__ = ["IDLE_TIMEOUT_S", "TrimmingPool"]

#: A pooled connection unused this long is closed (keeping ``keep_idle`` of them).
#: Long enough that a busy instance keeps its connections (each reconnect is a server
#: process started), short enough that a burst leaves nothing open for long.
IDLE_TIMEOUT_S = 10.0
_IDLE_SINCE = "taskmgr_idle_since"


class TrimmingPool(QueuePool):
    """A bounded LIFO ``QueuePool`` closing connections idle for ``idle_timeout``.

    ``pool_size`` is the most connections it holds (``max_overflow`` is always 0). The
    trimming runs on a timer armed only while more than ``keep_idle`` connections sit
    in the pool, so it needs no traffic to happen and costs nothing at rest.
    """

    # idle_timeout and keep_idle are positional-or-keyword so that
    # ``sqlalchemy.create_engine(poolclass=TrimmingPool, idle_timeout=...)`` passes them.
    def __init__(
        self,
        creator: Any,
        idle_timeout: float | None = None,
        keep_idle: int = 1,
        **kw: Any,
    ) -> None:
        kw["max_overflow"] = 0
        kw["use_lifo"] = True
        super().__init__(creator, **kw)
        self.idle_timeout = IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
        self.keep_idle = keep_idle
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()

    def recreate(self) -> QueuePool:
        pool = super().recreate()
        assert isinstance(pool, TrimmingPool)
        pool.idle_timeout = self.idle_timeout
        pool.keep_idle = self.keep_idle
        return pool

    def dispose(self) -> None:
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        super().dispose()

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()
        super()._do_return_conn(record)
        if self._pool.qsize() > self.keep_idle:
            self._arm(self.idle_timeout)

    def _arm(self, delay: float) -> None:
        with self._timer_lock:
            if self._timer is not None:
                return
            timer = threading.Timer(delay, self._trim)
            timer.daemon = True
            timer.name = "taskmgr-pool-trim"
            self._timer = timer
        timer.start()

    def _trim(self) -> None:
        """Close the connections idle for ``idle_timeout``, the least recently used
        first, while more than ``keep_idle`` are idle; re-arm for the next one."""
        with self._timer_lock:
            self._timer = None
        now = time.monotonic()
        stale: list[ConnectionPoolEntry] = []
        next_due: float | None = None
        queue: Any = self._pool  # sqlalchemy.util.queue.Queue: a deque under a mutex
        with queue.mutex:
            idle = queue.queue  # LIFO: the least recently used is on the left
            while len(idle) > self.keep_idle:
                since = idle[0].info.get(_IDLE_SINCE, now)
                if now - since < self.idle_timeout:
                    next_due = since + self.idle_timeout - now
                    break
                stale.append(idle.popleft())
            if stale:
                queue.not_full.notify(len(stale))
        for record in stale:
            try:
                record.close()
            finally:
                self._dec_overflow()  # one connection fewer: a new one may be opened
        if next_due is not None:
            self._arm(next_due)
