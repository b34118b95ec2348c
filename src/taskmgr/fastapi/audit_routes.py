"""The audit routes of :func:`~taskmgr.fastapi.create_router`: the audit log of every
job and of one job, newest first, paged by cursor like the history; and how a write
route tells the source of a change (the dashboard, or another client of the API)."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from taskmgr.core.audit import AuditAction, AuditEntry, AuditPage, AuditSource
from taskmgr.fastapi.csrf import ACTION_HEADER
from taskmgr.fastapi.parameters import MAX_PAGE, READ, Cursor, JobKey, Limit
from taskmgr.fastapi.schemas import JOB_KEY_REGEX, Instant, clamp_instant
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


class AuditEntryOut(BaseModel):
    """One change to a job or to the service's state."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "at": "2026-01-02T09:30:00Z",
                    "actor": "alice",
                    "source": "dashboard",
                    "action": "update",
                    "job_key": "reports.nightly",
                    "execution_id": None,
                    "details": {"changes": {"max_retries": {"before": 0, "after": 3}}},
                }
            ]
        },
    )

    id: int
    at: datetime = Field(description="When the change was made (the service's clock).")
    actor: str | None = Field(description="Who made it (the router's actor), if named.")
    source: AuditSource
    action: AuditAction
    job_key: str | None
    execution_id: str | None
    details: dict[str, Any] = Field(
        description=(
            'For an update, {"changes": {field: {"before": ..., "after": ...}}} with only '
            'the changed fields; for a create or a delete, {"job": {...}}; for a '
            "retention run, how many rows it removed."
        )
    )

    @classmethod
    def of(cls, entry: AuditEntry) -> "AuditEntryOut":
        return cls(**entry.model_dump())


class AuditPageOut(BaseModel):
    """Audit entries newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[AuditEntryOut]
    next_cursor: str | None = None

    @classmethod
    def of(cls, page: AuditPage) -> "AuditPageOut":
        return cls(items=[AuditEntryOut.of(e) for e in page.items], next_cursor=page.next_cursor)


def write_source(request: Request) -> AuditSource:
    """The source a write is recorded with: ``dashboard`` when the request carries the
    dashboard's action header, else ``api``. Informative, like the actor's name: a
    client can send the same header, so access is decided by the auth dependencies."""
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
