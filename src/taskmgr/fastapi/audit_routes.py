"""The audit routes of :func:`~taskmgr.fastapi.create_router`: the audit log of every
job and of one job, newest first, paged by cursor like the history; and how a write
route tells the source of a change (the dashboard, or another client of the API)."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.fastapi.csrf import ACTION_HEADER
from taskmgr.fastapi.parameters import MAX_PAGE, READ, Cursor, JobKey, Limit
from taskmgr.fastapi.schemas import (
    JOB_KEY_REGEX,
    AuditEntryOut,
    AuditPageOut,
    Instant,
    clamp_instant,
)
from taskmgr.service import AsyncSchedulerService

__all__ = [
    "DASHBOARD_ACTION",
    "AuditEntryOut",
    "AuditPageOut",
    "WriteSource",
    "add_audit_routes",
    "write_source",
]

#: The value of the ``X-Taskmgr-Action`` header the dashboard sends on its writes: such
#: a change is recorded with source ``dashboard`` (any other write: ``api``).
DASHBOARD_ACTION = "dashboard"

Actions = Annotated[list[AuditAction] | None, Query(description="Any of these actions.")]


async def write_source(request: Request) -> AuditSource:
    """The source a write is recorded with: ``dashboard`` when the request carries the
    dashboard's action header, else ``api``. Informative, like the actor's name: a
    client can send the same header, so access is decided by the auth dependencies.
    (``async``: FastAPI runs a plain ``def`` dependency in a worker thread.)"""
    action = request.headers.get(ACTION_HEADER, "")
    return AuditSource.DASHBOARD if action.strip().lower() == DASHBOARD_ACTION else AuditSource.API


#: A write route's parameter: the source its change is recorded with.
WriteSource = Annotated[AuditSource, Depends(write_source)]


def add_audit_routes(router: APIRouter, service: AsyncSchedulerService) -> None:
    """Add the audit routes (reads) to ``router``."""

    @router.get("/audit", operation_id="taskmgr_list_audit", responses=READ)
    async def list_audit(
        limit: Limit = 50,
        cursor: Cursor = None,
        job: Annotated[str | None, Query(pattern=JOB_KEY_REGEX, max_length=128)] = None,
        action: Actions = None,
        since: Annotated[
            Instant | None,
            Query(description="Changed at or after this instant (RFC 3339, with an offset)."),
        ] = None,
        until: Annotated[
            Instant | None,
            Query(description="Changed at or before this instant (RFC 3339, with an offset)."),
        ] = None,
    ) -> AuditPageOut:
        """The audit log, newest first: every change to a job or to the service's state
        (who, when, through which door, what), filtered by job, action and time."""
        page = await service.list_audit(
            job,
            action=action,
            since=clamp_instant(since) if since is not None else None,
            until=clamp_instant(until) if until is not None else None,
            limit=min(limit, MAX_PAGE),
            cursor=cursor,
        )
        return AuditPageOut.of(page)

    @router.get("/jobs/{job_key}/audit", operation_id="taskmgr_list_job_audit", responses=READ)
    async def list_job_audit(
        job_key: JobKey,
        limit: Limit = 50,
        cursor: Cursor = None,
        action: Actions = None,
    ) -> AuditPageOut:
        """One job's audit log, newest first. A deleted job's log stays readable here
        (an unknown key has an empty log, never a 404)."""
        page = await service.list_audit(
            job_key, action=action, limit=min(limit, MAX_PAGE), cursor=cursor
        )
        return AuditPageOut.of(page)
