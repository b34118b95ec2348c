"""The maintenance-window routes of :func:`~taskmgr.fastapi.create_router`: list, add
and delete windows."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time, and some name closure variables (the host's ``actor`` dependency).

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.params import Depends as DependsParam

from taskmgr.core.windows import MAX_WINDOW_NAME
from taskmgr.fastapi.audit_routes import WriteSource
from taskmgr.fastapi.parameters import READ, WRITE
from taskmgr.fastapi.schemas.common import JOB_KEY_REGEX
from taskmgr.fastapi.schemas.windows import WindowOut, WindowRequest, WindowsOut
from taskmgr.service import AsyncSchedulerService

__all__ = ["add_window_routes"]

WindowName = Annotated[str, Path(max_length=MAX_WINDOW_NAME, pattern=JOB_KEY_REGEX)]


def add_window_routes(
    router: APIRouter,
    service: AsyncSchedulerService,
    writes: list[DependsParam],
    actor_dependency: Callable[..., Any],
) -> None:
    """Add the window routes to ``router``; ``writes`` guard those that change
    something, ``actor_dependency`` names who asks (the audit log)."""

    @router.get("/windows", operation_id="taskmgr_list_windows", responses=READ)
    async def list_windows(
        open_only: Annotated[
            bool, Query(alias="open", description="Only the windows open now.")
        ] = False,
    ) -> WindowsOut:
        """The maintenance windows by name, each with whether it is open now, until
        when, and when it opens next."""
        windows = await service.list_windows(open_only=open_only)
        now = service.sync.clock.now()
        return WindowsOut(items=[WindowOut.of(window, now) for window in windows])

    @router.post(
        "/windows",
        operation_id="taskmgr_add_window",
        status_code=201,
        dependencies=writes,
        responses=WRITE,
    )
    async def add_window(
        body: WindowRequest,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> WindowOut:
        """Add a maintenance window (recorded in the audit log). 422 ``invalid_window``
        (both or neither form, end not after start, a duration not positive or longer
        than the time between two starts), ``window_in_past``, ``window_overlap`` (a
        window of the same scope is open at the same time within a year),
        ``window_job_not_found``, ``invalid_cron``, ``invalid_timezone``; 409
        ``window_exists``. Nothing is stored then."""
        window = await service.add_window(
            body.name,
            job_key=body.job_key,
            action=body.action,
            start=body.start,
            end=body.end,
            cron=body.cron,
            duration=body.duration,
            weekly=body.weekly,
            timezone=body.timezone,
            reason=body.reason,
            actor=who,
            source=source,
        )
        return WindowOut.of(window, service.sync.clock.now())

    @router.delete(
        "/windows/{name}",
        operation_id="taskmgr_delete_window",
        status_code=204,
        dependencies=writes,
        responses=WRITE,
        response_class=Response,
    )
    async def delete_window(
        name: WindowName,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> Response:
        """Delete a maintenance window (recorded in the audit log). 404
        ``window_not_found``."""
        await service.delete_window(name, actor=who, source=source)
        return Response(status_code=204)
