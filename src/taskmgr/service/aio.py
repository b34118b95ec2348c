"""The awaitable API: :class:`AsyncSchedulerService`, the same service for ``async def``
code. Each method runs the one synchronous implementation in a worker thread, so it
never blocks the event loop; there is no second implementation to drift from the
first. Deferring inside an ``AsyncSession``/``AsyncConnection`` prepares the run in a
thread and writes it on the host's connection, in the host's transaction."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from taskmgr.core import tracing as _tracing
from taskmgr.core.models import Execution
from taskmgr.exceptions import VersionConflictError
from taskmgr.service.base import RUN_TRIES
from taskmgr.service.facade import SchedulerService
from taskmgr.service.tasks import Task, _task_key
from taskmgr.storage.base import NewExecution

__all__ = ["AsyncSchedulerService"]

P = ParamSpec("P")
R = TypeVar("R")


def awaitable(
    method: Callable[Concatenate[SchedulerService, P], R],
) -> Callable[Concatenate[AsyncSchedulerService, P], Coroutine[Any, Any, R]]:
    """``method`` of the service, run in a worker thread (``asyncio.to_thread``)."""

    @functools.wraps(method)
    async def call(self: AsyncSchedulerService, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    return call


class AsyncSchedulerService:
    """A :class:`SchedulerService` for ``async def`` code: every public method of the
    service, awaitable. ``async with`` starts it and shuts it down."""

    def __init__(self, service: SchedulerService) -> None:
        if not isinstance(service, SchedulerService):
            raise TypeError(f"expected a SchedulerService, got {type(service).__name__}")
        self._service = service

    @property
    def sync(self) -> SchedulerService:
        """The synchronous service this one awaits."""
        return self._service

    @property
    def running(self) -> bool:
        return self._service.running

    async def __aenter__(self) -> AsyncSchedulerService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> SchedulerService:
        """:meth:`SchedulerService.start`, in a worker thread. ``async def`` jobs run on
        the awaiting event loop, as when the sync service is started on it."""
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._service._start, loop)

    shutdown = awaitable(SchedulerService.shutdown)
    close = awaitable(SchedulerService.close)
    open = awaitable(SchedulerService.open)
    register = awaitable(SchedulerService.register)
    run_due = awaitable(SchedulerService.run_due)
    add_listener = awaitable(SchedulerService.add_listener)
    remove_listener = awaitable(SchedulerService.remove_listener)
    add_incident_listener = awaitable(SchedulerService.add_incident_listener)
    remove_incident_listener = awaitable(SchedulerService.remove_incident_listener)
    check_alerts = awaitable(SchedulerService.check_alerts)

    # -- jobs ----------------------------------------------------------------------
    # mypy cannot prove ``**options`` never holds "self": the call is still typed.
    create_job = awaitable(SchedulerService.create_job)  # type: ignore[arg-type]
    update_job = awaitable(SchedulerService.update_job)  # type: ignore[arg-type]
    delete_job = awaitable(SchedulerService.delete_job)
    pause_job = awaitable(SchedulerService.pause_job)
    resume_job = awaitable(SchedulerService.resume_job)
    trigger_job = awaitable(SchedulerService.trigger_job)
    set_retention = awaitable(SchedulerService.set_retention)
    pause_queue = awaitable(SchedulerService.pause_queue)
    resume_queue = awaitable(SchedulerService.resume_queue)
    pause_service = awaitable(SchedulerService.pause_service)
    resume_service = awaitable(SchedulerService.resume_service)
    list_pauses = awaitable(SchedulerService.list_pauses)
    backfill = awaitable(SchedulerService.backfill)
    add_window = awaitable(SchedulerService.add_window)
    delete_window = awaitable(SchedulerService.delete_window)
    list_windows = awaitable(SchedulerService.list_windows)
    cleanup_history = awaitable(SchedulerService.cleanup_history)

    # -- queries -------------------------------------------------------------------
    get_job = awaitable(SchedulerService.get_job)
    list_jobs = awaitable(SchedulerService.list_jobs)
    preview = awaitable(SchedulerService.preview)
    get_execution = awaitable(SchedulerService.get_execution)
    list_executions = awaitable(SchedulerService.list_executions)
    list_audit = awaitable(SchedulerService.list_audit)
    failure_groups = awaitable(SchedulerService.failure_groups)
    recent_executions = awaitable(SchedulerService.recent_executions)
    job_queues = awaitable(SchedulerService.job_queues)
    list_instances = awaitable(SchedulerService.list_instances)
    list_incidents = awaitable(SchedulerService.list_incidents)
    health = awaitable(SchedulerService.health)
    wait = awaitable(SchedulerService.wait)
    cancel_execution = awaitable(SchedulerService.cancel_execution)

    # -- tasks ---------------------------------------------------------------------

    async def defer(
        self,
        task: Task,
        /,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        actor: str | None = None,
        session: object | None = None,
        **kwargs: Any,
    ) -> Execution:
        """:meth:`SchedulerService.defer`; ``session`` may also be an ``AsyncSession``
        or ``AsyncConnection`` (the run is then written in its transaction)."""
        calls: list[tuple[Mapping[str, Any], str | None]] = [(kwargs, idempotency_key)]
        [execution] = await self._defer(task, calls, run_at, delay, actor, session)
        return execution

    async def defer_many(
        self,
        task: Task,
        kwargs_list: Iterable[Mapping[str, Any]],
        /,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        actor: str | None = None,
        session: object | None = None,
    ) -> list[Execution]:
        """:meth:`SchedulerService.defer_many`, with ``session`` as for :meth:`defer`."""
        calls = await asyncio.to_thread(self._service._checked_calls, kwargs_list)
        return await self._defer(task, calls, run_at, delay, actor, session)

    async def _defer(
        self,
        task: Task,
        calls: list[tuple[Mapping[str, Any], str | None]],
        run_at: datetime | None,
        delay: timedelta | float | None,
        actor: str | None,
        session: object | None,
    ) -> list[Execution]:
        service = self._service
        run_sync = getattr(session, "run_sync", None)  # AsyncSession, AsyncConnection
        if session is None or run_sync is None:
            return await asyncio.to_thread(
                service._defer, task, calls, run_at, delay, actor, session
            )
        if _tracing.enabled():  # as SchedulerService._defer: the runs keep its context
            with _tracing.defer_span(_task_key(task), len(calls)) as span:
                executions = await self._defer_in(run_sync, task, calls, run_at, delay, actor)
                _tracing.deferred(span, [e.id for e in executions])
                return executions
        return await self._defer_in(run_sync, task, calls, run_at, delay, actor)

    async def _defer_in(
        self,
        run_sync: Any,
        task: Task,
        calls: list[tuple[Mapping[str, Any], str | None]],
        run_at: datetime | None,
        delay: timedelta | float | None,
        actor: str | None,
    ) -> list[Execution]:
        """Prepare the runs off the loop, then write them on the host's async session."""
        service = self._service
        for attempt in range(RUN_TRIES):
            news, versions = await asyncio.to_thread(
                functools.partial(service._prepare, fresh=attempt > 0),
                task,
                calls,
                run_at,
                delay,
                actor,
            )
            try:
                executions: list[Execution] = await run_sync(_write_in, service, news, versions)
                return executions
            except VersionConflictError:  # the task changed while it was prepared
                if attempt == RUN_TRIES - 1:
                    raise
        raise AssertionError("unreachable")


def _write_in(
    host: Any, service: SchedulerService, news: list[NewExecution], versions: dict[int, int]
) -> list[Execution]:
    """Write prepared runs on the host's (sync) session or connection."""
    return service.storage.defer_executions(
        news, transaction=host, on_commit=service._wake, job_versions=versions
    )
