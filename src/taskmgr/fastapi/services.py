"""The service the routes and the lifespan await: a host hands either the sync
:class:`SchedulerService` or its :class:`AsyncSchedulerService`, and gets the same
behaviour from both."""

from __future__ import annotations

from taskmgr.service import AsyncSchedulerService, SchedulerService

__all__ = ["AnyService", "awaitable_service"]

#: What ``create_router``, ``lifespan`` and ``create_app`` accept.
AnyService = SchedulerService | AsyncSchedulerService


def awaitable_service(service: AnyService) -> AsyncSchedulerService:
    """``service`` as an :class:`AsyncSchedulerService`: its methods run in worker
    threads, so an ``async def`` route awaiting them never blocks the event loop.

    :raises TypeError: ``service`` is neither.
    """
    if isinstance(service, AsyncSchedulerService):
        return service
    return AsyncSchedulerService(service)
