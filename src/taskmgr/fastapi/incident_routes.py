"""The incident routes of :func:`~taskmgr.fastapi.create_router`: the incidents of the
alert rules, newest first, the open ones alone for a monitor or the dashboard's
header."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

from typing import Annotated

from fastapi import APIRouter, Query

from taskmgr.fastapi.parameters import MAX_PAGE, READ, Limit
from taskmgr.fastapi.schemas import JOB_KEY_REGEX
from taskmgr.fastapi.schemas.incidents import IncidentOut, IncidentPageOut
from taskmgr.service import AsyncSchedulerService

__all__ = ["add_incident_routes"]


def add_incident_routes(router: APIRouter, service: AsyncSchedulerService) -> None:
    """Add the incident routes (reads) to ``router``."""

    @router.get("/incidents", operation_id="taskmgr_list_incidents", responses=READ)
    async def list_incidents(
        limit: Limit = 50,
        open: Annotated[bool, Query(description="Only the incidents still open.")] = False,
        job: Annotated[
            str | None,
            Query(pattern=JOB_KEY_REGEX, max_length=128, description="Only this job's."),
        ] = None,
        before: Annotated[
            int | None,
            Query(ge=1, le=2**63 - 1, description="next_before of the last page."),
        ] = None,
    ) -> IncidentPageOut:
        """Incidents of the alert rules, newest first: a job late, failing, overrunning
        or without a success for too long, open until its rule holds again."""
        size = min(limit, MAX_PAGE)
        found = await service.list_incidents(open_only=open, job_key=job, limit=size, before=before)
        return IncidentPageOut(
            items=[IncidentOut.of(incident) for incident in found],
            next_before=found[-1].id if len(found) == size else None,
        )
