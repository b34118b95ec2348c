"""The history routes of :func:`~taskmgr.fastapi.create_router`: a job's executions,
every job's executions, one execution, the queues (each job's executions that have
not ended), and the failures of every job grouped by job and error type."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time.

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from taskmgr.fastapi import wire
from taskmgr.fastapi.parameters import (
    JOB_READ,
    MAX_PAGE,
    READ,
    Cursor,
    ExecutionId,
    JobKey,
    Limit,
    Statuses,
    Triggers,
    problems,
)
from taskmgr.fastapi.schemas import (
    JOB_KEY_REGEX,
    ExecutionOut,
    ExecutionPageOut,
    FailureGroupOut,
    FailuresOut,
    Instant,
    JobQueueOut,
    JobRunsOut,
    clamp_instant,
)
from taskmgr.service import AsyncSchedulerService

__all__ = ["MAX_FAILURE_GROUPS", "MAX_PER_JOB", "MAX_RECENT_JOBS", "add_history_routes"]

#: Most jobs and executions per job of one ``/recent-executions`` call.
MAX_RECENT_JOBS = 500
MAX_PER_JOB = 100
#: Most groups of one ``/failures`` call.
MAX_FAILURE_GROUPS = 200

ScheduledSince = Annotated[
    Instant | None,
    Query(description="Scheduled at or after this instant (RFC 3339, with an offset)."),
]
ScheduledUntil = Annotated[
    Instant | None,
    Query(description="Scheduled at or before this instant (RFC 3339, with an offset)."),
]
JobFilter = Annotated[str | None, Query(pattern=JOB_KEY_REGEX, max_length=128)]
ChainId = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Only the attempts of this run: the id of its first attempt.",
    ),
]
FailureStatuses = Annotated[
    list[Literal["failed", "timeout", "lost"]] | None,
    Query(description="Any of these failure statuses (default: all three)."),
]


def add_history_routes(router: APIRouter, service: AsyncSchedulerService) -> None:
    """Add the history routes (all reads) to ``router``."""

    @router.get(
        "/jobs/{job_key}/executions",
        operation_id="taskmgr_list_job_executions",
        responses=JOB_READ,
        response_model=ExecutionPageOut,
    )
    async def list_job_executions(
        job_key: JobKey,
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Statuses = None,
        trigger: Triggers = None,
        since: ScheduledSince = None,
        until: ScheduledUntil = None,
    ) -> Response:
        """The job's executions, newest first (404 for an unknown job), filtered by
        status, trigger and time."""
        await service.get_job(job_key)
        page = await service.list_executions(
            job_key,
            status=status,
            trigger=trigger,
            since=clamp_instant(since) if since is not None else None,
            until=clamp_instant(until) if until is not None else None,
            limit=min(limit, MAX_PAGE),
            cursor=cursor,
        )
        return wire.execution_page(page.items, page.next_cursor)

    @router.get(
        "/executions",
        operation_id="taskmgr_list_executions",
        responses=READ,
        response_model=ExecutionPageOut,
    )
    async def list_executions(
        limit: Limit = 50,
        cursor: Cursor = None,
        job: JobFilter = None,
        status: Statuses = None,
        trigger: Triggers = None,
        since: ScheduledSince = None,
        until: ScheduledUntil = None,
        chain: ChainId = None,
    ) -> Response:
        """Executions of every job, newest first, filtered by job, status, trigger,
        time and chain (a run's attempts)."""
        page = await service.list_executions(
            job,
            status=status,
            trigger=trigger,
            chain_id=chain,
            since=clamp_instant(since) if since is not None else None,
            until=clamp_instant(until) if until is not None else None,
            limit=min(limit, MAX_PAGE),
            cursor=cursor,
        )
        return wire.execution_page(page.items, page.next_cursor)

    @router.get("/failures", operation_id="taskmgr_list_failures", responses=READ)
    async def list_failures(
        job: JobFilter = None,
        status: FailureStatuses = None,
        since: Annotated[
            Instant | None,
            Query(description="Failed at or after this instant (RFC 3339, with an offset)."),
        ] = None,
        until: Annotated[
            Instant | None,
            Query(description="Failed at or before this instant (RFC 3339, with an offset)."),
        ] = None,
        limit: Annotated[
            int,
            Query(
                ge=1,
                description=f"Most groups; values above {MAX_FAILURE_GROUPS} are clamped.",
            ),
        ] = 100,
    ) -> FailuresOut:
        """What failed, across jobs: the failed, timed-out and lost attempts completed
        in the time range, grouped by job, status and error type (by the database),
        the most recently seen group first: how many attempts and runs, first and last
        seen, the latest attempt and its message."""
        wanted = min(limit, MAX_FAILURE_GROUPS)
        groups = await service.failure_groups(
            job,
            status=status,
            since=clamp_instant(since) if since is not None else None,
            until=clamp_instant(until) if until is not None else None,
            limit=wanted + 1,
        )
        return FailuresOut(
            items=[FailureGroupOut.of(g) for g in groups[:wanted]],
            truncated=len(groups) > wanted,
        )

    @router.get(
        "/recent-executions",
        operation_id="taskmgr_list_recent_executions",
        responses=READ,
        response_model=list[JobRunsOut],
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
    ) -> Response:
        """The newest executions of each of these jobs, in one call (what the dashboard
        shows for its job list): one entry per distinct key, in the order given; an
        unknown key has no executions."""
        return wire.job_runs(await service.recent_executions(job_key, per_job))

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
