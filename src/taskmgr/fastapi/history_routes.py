"""The history routes of :func:`~taskmgr.fastapi.create_router`: a job's executions,
every job's executions, and one execution."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from taskmgr.fastapi.parameters import (
    JOB_READ,
    MAX_PAGE,
    READ,
    Cursor,
    ExecutionId,
    JobKey,
    Limit,
    Statuses,
    problems,
)
from taskmgr.fastapi.schemas import JOB_KEY_REGEX, ExecutionOut, ExecutionPageOut
from taskmgr.service import SchedulerService

__all__ = ["add_history_routes"]


def add_history_routes(router: APIRouter, service: SchedulerService) -> None:
    """Add the history routes (all reads) to ``router``."""

    @router.get(
        "/jobs/{job_key}/executions",
        operation_id="taskmgr_list_job_executions",
        responses=JOB_READ,
    )
    def list_job_executions(
        job_key: JobKey,
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Statuses = None,
    ) -> ExecutionPageOut:
        """The job's executions, newest first (404 for an unknown job)."""
        service.get_job(job_key)
        page = service.list_executions(
            job_key, status=status, limit=min(limit, MAX_PAGE), cursor=cursor
        )
        return ExecutionPageOut(
            items=[ExecutionOut.of(e) for e in page.items], next_cursor=page.next_cursor
        )

    @router.get("/executions", operation_id="taskmgr_list_executions", responses=READ)
    def list_executions(
        limit: Limit = 50,
        cursor: Cursor = None,
        job: Annotated[str | None, Query(pattern=JOB_KEY_REGEX, max_length=128)] = None,
        status: Statuses = None,
        since: Annotated[
            AwareDatetime | None, Query(description="Scheduled at or after (with a time zone).")
        ] = None,
        until: Annotated[
            AwareDatetime | None, Query(description="Scheduled at or before (with a time zone).")
        ] = None,
    ) -> ExecutionPageOut:
        """Executions of every job, newest first, filtered by job, status and time."""
        page = service.list_executions(
            job,
            status=status,
            since=since,
            until=until,
            limit=min(limit, MAX_PAGE),
            cursor=cursor,
        )
        return ExecutionPageOut(
            items=[ExecutionOut.of(e) for e in page.items], next_cursor=page.next_cursor
        )

    @router.get(
        "/executions/{execution_id}",
        operation_id="taskmgr_get_execution",
        name="taskmgr_get_execution",
        responses=problems(401, 403, 404, 422, 503),
    )
    def get_execution(
        execution_id: ExecutionId,
    ) -> ExecutionOut:
        """One execution, with its error and traceback."""
        return ExecutionOut.of(service.get_execution(execution_id))
