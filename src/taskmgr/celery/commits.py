"""Group commit for a worker process: the take-overs and outcomes of executions that run
at the same time in one process, written together.

A worker writes twice per execution: the take-over before it runs (the receipt) and
its outcome before the message is acknowledged. Each is one autocommitted statement on
PostgreSQL, which waits for its WAL flush; executions running side by side (the
``threads`` pool, or an embedded worker's threads) share those statements instead of
queueing for a connection each. No thread of its own, and no waiting for company: the
first caller writes at once, alone (what a direct call costs, with the ``solo`` and
``prefork`` pools, whose processes run one execution at a time), and callers that
arrive while a write is in flight queue up; the first of them then writes, in one call,
everything that queued meanwhile. Each caller returns once its own item is written, so
an execution never starts before its take-over commits, and a message is never
acknowledged before its outcome commits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from taskmgr.core.clock import Clock
from taskmgr.exceptions import DataRejectedError, StorageError
from taskmgr.storage.base import Claimed, Outcome, Storage
from taskmgr.storage.task_handover import TakeOver

__all__ = ["GroupCommit", "WorkerWrites"]

T = TypeVar("T")
R = TypeVar("R")

#: The most items one write carries.
MAX_BATCH = 500


class _Waiter(Generic[T, R]):
    __slots__ = ("batch", "done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = threading.Event()
        #: Set with ``done`` when this caller is to write: the batch it writes, its own
        #: item first (taken off the queue for it).
        self.batch: list[_Waiter[T, R]] | None = None
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Calls of ``write`` shared by the threads that ask at the same time.

    :param write: writes a batch and returns one result per item, in order; an
        exception in an item's place is raised to that item's caller alone. An
        exception raised by ``write`` is raised to every caller of the batch.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Sequence[R | Exception]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T, R]] = []
        self._writing = False
        #: How many writes, and how many items they carried.
        self.writes = 0
        self.items = 0

    def __call__(self, item: T) -> R:
        """Write ``item`` (with whatever other threads asked for meanwhile) and return
        its result once it is written."""
        me: _Waiter[T, R] = _Waiter(item)
        with self._lock:
            if not self._writing:
                self._writing = True
                me.batch = [me, *self._take(self._max_batch - 1)]
            else:
                self._queue.append(me)
        if me.batch is None:
            self._wait(me)
        if me.batch is not None:  # this caller writes
            self._lead(me.batch)
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _take(self, room: int) -> list[_Waiter[T, R]]:
        """With the lock held: the oldest waiting callers, at most ``room``."""
        batch = self._queue[:room]
        del self._queue[: len(batch)]
        return batch

    def _wait(self, me: _Waiter[T, R]) -> None:
        try:
            me.done.wait()
        except BaseException:
            # interrupted (a time limit raised in this thread): nothing may be left
            # half-known, so either the item is withdrawn before anyone writes it, or
            # this caller waits for its write to end before going on
            with self._lock:
                if me in self._queue:
                    self._queue.remove(me)
                    raise
                if me.batch is not None:  # it was to write: the others go back first
                    self._queue[:0] = me.batch[1:]
                    me.batch = None
                    self._hand_on()
                    raise
            me.done.wait()
            raise

    def _lead(self, batch: list[_Waiter[T, R]]) -> None:
        """Write ``batch``, then hand the next one to the oldest caller still waiting."""
        with self._lock:
            self.writes += 1
            self.items += len(batch)
        interrupted: BaseException | None = None
        try:
            results = self._write([waiter.item for waiter in batch])
            if len(results) != len(batch):
                raise StorageError(f"wrote {len(batch)} items, got {len(results)} results")
        except Exception as exc:
            for waiter in batch:
                waiter.error = exc
        except BaseException as exc:  # this thread is ending (an exit, an interrupt)
            interrupted = exc
            for waiter in batch:
                waiter.error = StorageError(f"the write was interrupted: {exc!r}")
        else:
            for waiter, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    waiter.error = result
                else:
                    waiter.result = result
        finally:
            with self._lock:
                self._hand_on()
            for waiter in batch[1:]:
                waiter.done.set()
        if interrupted is not None:
            raise interrupted

    def _hand_on(self) -> None:
        """With the lock held, a write ending: the oldest caller still waiting writes
        the next batch; else nobody is writing."""
        if self._queue:
            head = self._queue.pop(0)
            head.batch = [head, *self._take(self._max_batch - 1)]
            head.done.set()
        else:
            self._writing = False


class WorkerWrites:
    """One worker process's group commits: take-overs and outcomes (made in each
    process, on first use: a forked pool process never shares its parent's)."""

    def __init__(self, storage: Storage, clock: Clock, instance_id: str) -> None:
        self.pid = os.getpid()
        self._storage = storage
        self._clock = clock
        self._instance_id = instance_id
        self.take_overs: GroupCommit[TakeOver, Claimed | None] = GroupCommit(self._take_over)
        self.outcomes: GroupCommit[Outcome, bool] = GroupCommit(self._record)

    def serves(self, instance_id: str) -> bool:
        """Whether these writes are this process's, for that worker instance."""
        return self.pid == os.getpid() and self._instance_id == instance_id

    def _take_over(self, requests: list[TakeOver]) -> list[Claimed | Exception | None]:
        # one ``now`` for the batch: the moment they are taken over
        now = self._clock.now()
        try:
            return list(self._storage.take_over_many(requests, to_owner=self._instance_id, now=now))
        except DataRejectedError:
            if len(requests) == 1:
                raise
        # one message's values were refused (nothing was taken over): each on its own,
        # so that only its caller hears of it
        results: list[Claimed | Exception | None] = []
        for request in requests:
            try:
                [claimed] = self._storage.take_over_many(
                    [request], to_owner=self._instance_id, now=now
                )
                results.append(claimed)
            except Exception as exc:
                results.append(exc)
        return results

    def _record(self, outcomes: list[Outcome]) -> list[bool | Exception]:
        try:
            return list(self._storage.record_outcomes(outcomes))
        except DataRejectedError:
            if len(outcomes) == 1:
                raise  # its caller stores a placeholder instead
        # the database refused one outcome's data: the others are written on their
        # own, and only the refused one's caller hears of it
        results: list[bool | Exception] = []
        for outcome in outcomes:
            try:
                results.append(self._storage.record_outcomes([outcome])[0])
            except Exception as exc:
                results.append(exc)
        return results
