"""Run executions in this process: sync jobs on a bounded thread pool, ``async def``
jobs on the host's event loop (when the service was started inside one) or on a
private loop thread."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from taskmgr.core import tracing as _tracing
from taskmgr.dispatch.base import DispatchContext, Dispatcher
from taskmgr.exceptions import ServiceStateError, TaskmgrError
from taskmgr.execution.run import ExecutionRun
from taskmgr.storage.base import Claimed, Outcome

__all__ = ["InlineDispatcher"]

logger = logging.getLogger("taskmgr.dispatch")

#: How long claimed work may be expected to wait for a free worker (see capacity()).
_QUEUE_BUDGET = 0.02
#: Most runs claimed ahead of the workers, however short they are.
_MAX_QUEUED = 500


class InlineDispatcher(Dispatcher):
    """Run jobs in the service's own process.

    ``max_workers`` bounds the threads running sync jobs. A sync job that outlives its
    ``timeout`` is recorded as ``timeout`` at the deadline; Python cannot stop a
    thread, so it keeps its worker until it returns, and its late result is ignored.
    ``async def`` jobs are cancelled at their timeout.

    ``shutdown(wait=True)`` called on the thread of the event loop the ``async def``
    jobs run on cannot wait for them (the loop is blocked by the call itself): it waits
    for the sync jobs and cancels those async runs, recorded ``cancelled`` when they had
    not started, else ``failed``; awaiting the shutdown
    (``AsyncSchedulerService.shutdown()``) lets them end.
    """

    def __init__(self, max_workers: int = 8) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
        self.max_workers = max_workers
        self._context: DispatchContext | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._host_loop: asyncio.AbstractEventLoop | None = None
        self._private_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._timers: set[threading.Timer] = set()
        #: ``async def`` runs on the host's loop that have not ended, by their future.
        self._host_runs: dict[Future[Outcome], ExecutionRun] = {}
        #: Set while a shutdown on the host loop's own thread cancels those runs.
        self._abandoning = False
        #: Average wall time of recent sync runs (None until one finished).
        self._run_seconds: float | None = None

    def start(self, context: DispatchContext) -> None:
        self._context = context
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="taskmgr-job")
        self._host_loop = context.host_loop

    def capacity(self) -> int:
        # Twice the pool: enough queued work to keep every worker busy between ticks,
        # little enough that claimed work does not wait long for a thread. When runs
        # are measured to be short, more: as much as the pool works off within
        # _QUEUE_BUDGET seconds (so a claim batches many fires, yet none waits longer).
        with self._lock:
            limit = 2 * self.max_workers
            average = self._run_seconds
            if average is not None:
                drained = int(self.max_workers * _QUEUE_BUDGET / max(average, 1e-6))
                limit = max(limit, min(drained, _MAX_QUEUED))
            return max(0, limit - self._in_flight)

    def _measured(self, seconds: float) -> None:
        """Fold one sync run's wall time into the running average (EWMA)."""
        with self._lock:
            average = self._run_seconds
            self._run_seconds = seconds if average is None else average * 0.9 + seconds * 0.1

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        context = self._require_context()
        traced = _tracing.enabled()
        for item in claimed:
            run = ExecutionRun(item, context.owner, context.clock)
            run.on_start = context.on_start
            if traced:
                stored = item.execution.trace_context  # the caller that asked for the run
                with _tracing.dispatch_span(run.span_attributes(), stored=stored) as parent:
                    run.trace_parent = parent
                    self._dispatch_one(run, context)
            else:
                self._dispatch_one(run, context)

    def _dispatch_one(self, run: ExecutionRun, context: DispatchContext) -> None:
        try:
            func = context.resolve(run.claimed.job.func)
        except TaskmgrError as exc:
            context.report(run.failed(exc))
            return
        with self._lock:
            self._in_flight += 1
        if inspect.iscoroutinefunction(func):
            self._submit_async(run, func)
        else:
            self._submit_sync(run, func)

    # -- sync jobs -----------------------------------------------------------------

    def _submit_sync(self, run: ExecutionRun, func: Callable[..., Any]) -> None:
        assert self._pool is not None
        context = self._require_context()
        reported = threading.Event()

        def report_once(outcome: Outcome) -> None:
            # the first of (result, timeout) wins locally; the storage fence is the
            # real guard, this only avoids a pointless write
            if not reported.is_set():
                reported.set()
                context.report(outcome)

        timer: threading.Timer | None = None
        if run.timeout is not None:
            timer = threading.Timer(run.timeout, lambda: report_once(run.timed_out()))
            timer.daemon = True
            with self._lock:
                self._timers.add(timer)

        def work() -> Outcome:
            # a run that waited for a worker beyond its misfire grace time (the process
            # is saturated) does not start late: it ends missed, with the reason
            late = run.too_late(run.clock.now())
            if late is not None:
                return run.missed(late)
            if timer is not None:
                timer.start()
            began = time.monotonic()
            try:
                return run.call_sync(func)
            finally:
                self._measured(time.monotonic() - began)

        def done(future: Future[Outcome]) -> None:
            if timer is not None:
                timer.cancel()
                with self._lock:
                    self._timers.discard(timer)
            if future.cancelled():
                report_once(run.cancelled("the service shut down before the run started"))
                self._finished()
                return
            error = future.exception()
            if error is not None:  # never expected: call_sync records failures itself
                report_once(run.failed(error))
            elif reported.is_set():
                logger.info(
                    "execution %s finished after its timeout; its result is ignored",
                    run.claimed.execution.id,
                )
            else:
                report_once(future.result())
            self._finished()

        try:
            future = self._pool.submit(work)
        except RuntimeError as exc:  # pool shut down between claim and dispatch
            report_once(run.failed(ServiceStateError(f"service is shutting down: {exc}")))
            self._finished()
            return
        future.add_done_callback(done)

    # -- async jobs ----------------------------------------------------------------

    def _submit_async(self, run: ExecutionRun, func: Callable[..., Any]) -> None:
        context = self._require_context()
        loop = self._event_loop()

        async def work() -> Outcome:
            late = run.too_late(run.clock.now())  # as for sync jobs
            if late is not None:
                return run.missed(late)
            return await run.call_async(func)

        def done(future: Future[Outcome]) -> None:
            with self._lock:
                self._host_runs.pop(future, None)
            error = future.exception() if not future.cancelled() else None
            if future.cancelled():
                context.report(self._abandoned(run))
            elif error is not None:
                context.report(run.failed(error))
            else:
                context.report(future.result())
            self._finished()

        coro: Coroutine[Any, Any, Outcome] = work()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError as exc:  # the host loop is closed
            coro.close()
            context.report(run.failed(ServiceStateError(f"event loop unavailable: {exc}")))
            self._finished()
            return
        if loop is self._host_loop:
            with self._lock:
                self._host_runs[future] = run
        future.add_done_callback(done)

    def _abandoned(self, run: ExecutionRun) -> Outcome:
        """The outcome of an ``async def`` run whose future was cancelled."""
        if not self._abandoning:
            return run.failed(ServiceStateError("the event loop was stopped"))
        # On the loop's own thread: the run cannot be running, only not started yet
        # or suspended in an ``await``.
        if run.started_at is None:
            return run.cancelled("the service shut down before the run started")
        return run.failed(
            ServiceStateError("the service was shut down from the event loop the run awaited on")
        )

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._host_loop is not None and not self._host_loop.is_closed():
            return self._host_loop
        with self._lock:
            if self._private_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="taskmgr-asyncio", daemon=True
                )
                thread.start()
                self._private_loop, self._loop_thread = loop, thread
            return self._private_loop

    # -- lifecycle -----------------------------------------------------------------

    def _finished(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._idle.notify_all()

    def _require_context(self) -> DispatchContext:
        if self._context is None:
            raise ServiceStateError("InlineDispatcher.start() was not called")
        return self._context

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def shutdown(self, *, wait: bool = True) -> None:
        if wait and self._host_loop is not None and _running_loop() is self._host_loop:
            self._abandon_host_runs()
        if wait:
            with self._lock:
                while self._in_flight:
                    self._idle.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        loop, thread = self._private_loop, self._loop_thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
            self._private_loop = self._loop_thread = None

    def _abandon_host_runs(self) -> None:
        """Cancel the runs on the host loop, whose thread is the caller's: waiting for
        them would never end."""
        with self._lock:
            futures = list(self._host_runs)
        if not futures:
            return
        logger.warning(
            "shutdown() was called on the event loop that runs %d async execution(s): they "
            "cannot end while it waits, so they are cancelled (await the shutdown instead)",
            len(futures),
        )
        self._abandoning = True
        try:
            for future in futures:
                future.cancel()  # its callback reports the outcome, on this thread
        finally:
            self._abandoning = False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
