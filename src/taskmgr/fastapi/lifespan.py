"""``lifespan(service)``: start and stop a service with the host's FastAPI app.

Pass it as ``FastAPI(lifespan=lifespan(service))``, or enter it inside the host's
own lifespan (``async with lifespan(service):``) to compose the two. A mounted
sub-app's lifespan never runs (Starlette), which is why taskmgr ships a router
plus this function rather than an app. It starts and stops the service through an
:class:`~taskmgr.AsyncSchedulerService`, so neither blocks the event loop.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from taskmgr.fastapi.services import AnyService, awaitable_service

__all__ = ["ServiceLifespan", "lifespan"]


class ServiceLifespan:
    """An async context manager that starts ``service`` and shuts it down.

    It is also callable with the app, so FastAPI accepts it as ``lifespan=``. A
    service that is already running when it is entered belongs to someone else:
    it is left running on exit (whoever starts a resource stops it).
    """

    def __init__(self, service: AnyService) -> None:
        self.aservice = awaitable_service(service)
        #: The sync service (what was passed, or what the awaitable one wraps).
        self.service = self.aservice.sync
        self._started = False

    def __call__(self, app: Any) -> ServiceLifespan:
        return ServiceLifespan(self.aservice)

    async def __aenter__(self) -> None:
        if not self.service.running:
            # In a worker thread (it opens the database and syncs jobs), on behalf of
            # this loop: the inline dispatcher runs ``async def`` jobs on the host's loop.
            await self.aservice.start()
            self._started = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._started:
            self._started = False
            # In a thread: shutdown waits for running jobs, and async ones need this
            # loop to keep turning to finish.
            await self.aservice.shutdown()


def lifespan(service: AnyService) -> ServiceLifespan:
    """Start ``service`` when the app starts and stop it when the app stops."""
    return ServiceLifespan(service)
