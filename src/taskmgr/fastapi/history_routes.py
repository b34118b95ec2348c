"""The history routes of :func:`~taskmgr.fastapi.create_router`: a job's executions,
every job's executions, one execution, and the queues (each job's executions that
have not ended)."""

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
from taskmgr.fastapi.schemas import JOB_KEY_REGEX, ExecutionOut, ExecutionPageOut, JobQueueOut
from taskmgr.service import AsyncSchedulerService

__all__ = ["add_history_routes"]


def add_history_routes(router: APIRouter, service: AsyncSchedulerService) -> None:
    """Add the history routes (all reads) to ``router``."""

    @router.get(
        "/jobs/{job_key}/executions",
        operation_id="taskmgr_list_job_executions",
        responses=JOB_READ,
    )
    async def list_job_executions(
        job_key: JobKey,
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Statuses = None,
    ) -> ExecutionPageOut:
        """The job's executions, newest first (404 for an unknown job)."""
        await service.get_job(job_key)
        page = await service.list_executions(
            job_key, status=status, limit=min(limit, MAX_PAGE), cursor=cursor
        )
        return ExecutionPageOut(
            items=[ExecutionOut.of(e) for e in page.items], next_cursor=page.next_cursor
        )

    @router.get("/executions", operation_id="taskmgr_list_executions", responses=READ)
    async def list_executions(
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
        page = await service.list_executions(
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
    async def get_execution(
        execution_id: ExecutionId,
    ) -> ExecutionOut:
        """One execution, with its error and traceback."""
        return ExecutionOut.of(await service.get_execution(execution_id))

    @router.get("/queues", operation_id="taskmgr_list_queues", responses=READ)
    async def list_queues() -> list[JobQueueOut]:
        """Per job with executions not yet ended (a task with runs waiting, a job
        running), ordered by job key: how many are pending, how many of those are due,
        how many run, and how long the oldest due one has waited. Jobs with nothing
        pending or running are left out."""
        queues = await service.job_queues()
        now = service.sync.clock.now()  # no I/O: an offset measured at start
        return [JobQueueOut.of(queue, now) for queue in queues]
