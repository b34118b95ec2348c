"""The history routes of :func:`~taskmgr.fastapi.create_router`: a job's executions,
every job's executions, one execution, and the queues (each job's executions that
have not ended)."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

from typing import Annotated

from fastapi import APIRouter, Query

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
from taskmgr.fastapi.schemas import (
    JOB_KEY_REGEX,
    ExecutionOut,
    ExecutionPageOut,
    Instant,
    JobQueueOut,
    JobRunsOut,
    clamp_instant,
)
from taskmgr.service import AsyncSchedulerService

__all__ = ["MAX_PER_JOB", "MAX_RECENT_JOBS", "add_history_routes"]

#: Most jobs and executions per job of one ``/recent-executions`` call.
MAX_RECENT_JOBS = 500
MAX_PER_JOB = 100


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
            Instant | None,
            Query(description="Scheduled at or after this instant (RFC 3339, with an offset)."),
        ] = None,
        until: Annotated[
            Instant | None,
            Query(description="Scheduled at or before this instant (RFC 3339, with an offset)."),
        ] = None,
    ) -> ExecutionPageOut:
        """Executions of every job, newest first, filtered by job, status and time."""
        page = await service.list_executions(
            job,
            status=status,
            since=clamp_instant(since) if since is not None else None,
            until=clamp_instant(until) if until is not None else None,
            limit=min(limit, MAX_PAGE),
            cursor=cursor,
        )
        return ExecutionPageOut(
            items=[ExecutionOut.of(e) for e in page.items], next_cursor=page.next_cursor
        )

    @router.get(
        "/recent-executions",
        operation_id="taskmgr_list_recent_executions",
        responses=READ,
    )
    async def list_recent_executions(
        job_key: Annotated[
            list[Annotated[str, Query(pattern=JOB_KEY_REGEX, max_length=128)]],
            Query(
                max_length=MAX_RECENT_JOBS,
                description=f"The jobs (at most {MAX_RECENT_JOBS}; repeat the parameter).",
            ),
        ] = [],  # noqa: B006 - FastAPI copies a default, it is never shared
        per_job: Annotated[
            int, Query(ge=1, le=MAX_PER_JOB, description="Executions per job, newest first.")
        ] = 20,
    ) -> list[JobRunsOut]:
        """The newest executions of each of these jobs, in one call (what the dashboard
        shows for its job list): one entry per distinct key, in the order given; an
        unknown key has no executions."""
        recent = await service.recent_executions(job_key, per_job)
        return [
            JobRunsOut(job_key=key, items=[ExecutionOut.of(e) for e in items])
            for key, items in recent.items()
        ]

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
