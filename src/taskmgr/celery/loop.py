"""The event loop ``async def`` jobs run on in a Celery worker: one per process, for as
long as the process lives.

Why one per process, and why on a thread of its own:

* A host's pooled async clients (a SQLAlchemy ``create_async_engine`` on asyncpg, an
  HTTP client) bind each connection to the loop that opened it. A new loop per run
  (``asyncio.run()``) hands the next run a pooled connection of a closed loop ("attached
  to a different loop"). One loop that outlives the runs keeps the pool usable.
* With the prefork pool (the default) each pool process is a process: one loop each.
  With ``--pool threads`` the pool threads share their process's loop: a loop per pool
  thread would again hand a connection opened on one thread's loop to a run on
  another's. Runs from several threads then await side by side on the one loop.
* The loop runs on a thread of its own (``taskmgr-asyncio``); the pool's thread submits
  the run (``run_coroutine_threadsafe`` style) and waits for its outcome. Celery's soft
  time limit, an exception a signal handler raises in the pool's thread, so interrupts
  that wait and never the loop's own code; the job is then cancelled through the loop
  (it sees ``CancelledError`` at its ``await``, may clean up) and recorded ``timeout``.
  taskmgr's own timeout (``asyncio.wait_for`` at the job's ``timeout``) works on every
  pool.

A forked process never uses its parent's loop (its thread does not exist there): the
loop is made on first use in each process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from taskmgr.execution.run import ExecutionRun
from taskmgr.storage.base import Outcome

__all__ = ["WorkerLoop"]

logger = logging.getLogger("taskmgr.celery")


class WorkerLoop:
    """This process's event loop for ``async def`` jobs, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop of this process, started if it is not running yet."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="taskmgr-asyncio", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, run: ExecutionRun, func: Callable[..., Any]) -> Outcome:
        """Run ``run``'s ``async def`` job on this process's loop and wait for its
        outcome. A time limit raised in this thread while it waits (Celery's soft limit,
        one of ``run.timeout_errors``) cancels the job and is recorded as its timeout."""
        loop = self.loop()
        outcome: concurrent.futures.Future[Outcome] = concurrent.futures.Future()
        tasks: list[asyncio.Task[Outcome]] = []

        def start() -> None:  # on the loop's thread
            task = loop.create_task(run.call_async(func))
            tasks.append(task)
            task.add_done_callback(lambda done: _settle(done, outcome))

        loop.call_soon_threadsafe(start)
        try:
            return outcome.result()
        except run.timeout_errors:
            run.expire()
            # callbacks run in order: start() has made the task by the time this runs
            loop.call_soon_threadsafe(lambda: tasks[0].cancel())
            try:
                return outcome.result()  # the job's timeout; a job that ignores the
                # cancellation is ended by the hard time limit
            except concurrent.futures.CancelledError:  # cancelled before it started
                return run.timed_out()

    def close(self, timeout: float = 5.0) -> None:
        """Stop this process's loop (the worker, or its pool process, is ending): its
        async generators are closed, then the loop."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = self._pid = None
        if loop is None or thread is None or pid != os.getpid() or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(timeout)
        except Exception:  # never keep a worker from ending
            logger.warning("could not close the async generators of the worker's event loop")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


def _settle(task: asyncio.Task[Outcome], outcome: concurrent.futures.Future[Outcome]) -> None:
    if task.cancelled():
        outcome.cancel()
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())
