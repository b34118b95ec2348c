"""The system routes of :func:`~taskmgr.fastapi.create_router`: the instances, the
health check, history cleanup, and the caller's session (what the dashboard may
offer)."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from taskmgr.fastapi.audit_routes import WriteSource
from taskmgr.fastapi.parameters import READ, problems
from taskmgr.fastapi.problems import ProblemRoute
from taskmgr.fastapi.schemas import (
    CleanupRequest,
    CleanupResult,
    HealthOut,
    InstanceOut,
    SessionOut,
)
from taskmgr.service import AsyncSchedulerService

__all__ = ["add_system_routes"]

logger = logging.getLogger("taskmgr.api")


class _SessionRoute(ProblemRoute):
    """The probe of the write dependencies: a refusal (403) means read-only, not an error."""

    def render_error(self, error: Exception, request: Request) -> Response:
        if isinstance(error, HTTPException) and error.status_code == 403:
            return JSONResponse(SessionOut(can_write=False).model_dump())
        return super().render_error(error, request)


def add_system_routes(
    router: APIRouter,
    service: AsyncSchedulerService,
    writes: list[DependsParam],
    dashboard_write: bool | None,
    actor_dependency: Callable[..., str | None],
) -> None:
    """Add the system routes to ``router``; ``writes`` guard cleanup and are what the
    session route probes; ``dashboard_write`` overrides the service's setting;
    ``actor_dependency`` names who asks for a cleanup (the audit log)."""

    @router.get("/instances", operation_id="taskmgr_list_instances", responses=READ)
    async def list_instances() -> list[InstanceOut]:
        """Scheduler instances sharing the database, newest first."""
        now = service.sync.clock.now()  # no I/O: an offset measured at start
        return [InstanceOut.of(instance, now) for instance in await service.list_instances()]

    @router.get(
        "/health",
        operation_id="taskmgr_get_health",
        response_model=HealthOut,
        responses={
            **READ,
            503: {"model": HealthOut, "description": "The database is unavailable."},
        },
    )
    async def get_health() -> Any:
        """Database reachable, schema current, live instances and the oldest overdue job.
        503 (with the same body) when the database does not answer."""
        found = await service.health()
        if found.error is not None:  # the driver's message stays in the server log
            logger.warning("health check: %s", found.error)
        health = HealthOut.of(found)
        if not health.database:
            return JSONResponse(health.model_dump(mode="json"), status_code=503)
        return health

    @router.post(
        "/maintenance/cleanup",
        operation_id="taskmgr_cleanup_history",
        dependencies=writes,
        responses=problems(401, 403, 413, 415, 422, 503),
    )
    async def cleanup_history(
        body: CleanupRequest,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> CleanupResult:
        """Delete finished executions older than ``retention_days`` (pending and
        running ones are never deleted); the audit log records how many."""
        deleted = await service.cleanup_history(body.retention_days, actor=who, source=source)
        return CleanupResult(deleted=deleted)

    write_in_dashboard = (
        service.sync.settings.dashboard_write if dashboard_write is None else dashboard_write
    )

    async def _session() -> SessionOut:
        """What the caller may do (``can_write``: the write dependencies let it through
        and the dashboard's write mode is on)."""
        return SessionOut(can_write=write_in_dashboard)

    router.add_api_route(
        "/session",
        _session,
        methods=["GET"],
        operation_id="taskmgr_get_session",
        dependencies=writes,
        responses=problems(401, 503),
        response_model=SessionOut,
        route_class_override=type("TaskmgrSessionRoute", (_SessionRoute, router.route_class), {}),
    )
