"""The job routes of :func:`~taskmgr.fastapi.create_router`: list, create, read,
change, delete, trigger, pause, resume and preview a job.

The job list pages by an opaque cursor (the last key, base64url-encoded); a job's
``ETag`` is its version, and ``If-Match`` makes a change conditional on it.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time, and some name closure variables (the host's ``actor`` dependency).

import base64
import binascii
import logging
import math
import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.params import Depends as DependsParam

from taskmgr.core.models import Job, JobState
from taskmgr.exceptions import VersionConflictError
from taskmgr.fastapi import wire
from taskmgr.fastapi.audit_routes import WriteSource
from taskmgr.fastapi.errors import FieldError, HTTPProblem
from taskmgr.fastapi.limits import TriggerLimiter
from taskmgr.fastapi.parameters import (
    JOB_READ,
    MAX_PAGE,
    READ,
    WRITE,
    Cursor,
    JobKey,
    Limit,
    accepted_run,
    problems,
)
from taskmgr.fastapi.problems import DATABASE_UNAVAILABLE
from taskmgr.fastapi.schemas import (
    JOB_KEY_REGEX,
    TEXT_PATTERN,
    ExecutionOut,
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    PreviewOut,
    TriggerRequest,
)
from taskmgr.fastapi.schemas.pauses import PauseRequest
from taskmgr.service import AsyncSchedulerService

__all__ = ["MAX_PREVIEW", "add_job_routes", "require_runner"]

logger = logging.getLogger("taskmgr.api")

#: An ``If-Match`` of this API: a job's ETag (its version), possibly weak or unquoted.
IF_MATCH_REGEX = r'^\s*(W/)?"?[0-9]{1,30}"?\s*$'

#: Largest ``n`` of the preview endpoint; larger values are clamped.
MAX_PREVIEW = 100


def add_job_routes(
    router: APIRouter,
    service: AsyncSchedulerService,
    writes: list[DependsParam],
    limiter: TriggerLimiter | None,
    actor_dependency: Callable[..., str | None],
) -> None:
    """Add the job routes to ``router``; ``writes`` guard those that change something,
    ``limiter`` bounds manual runs, ``actor_dependency`` names who asks for a change
    (recorded in the audit log, with the source :func:`write_source` tells)."""

    @router.get("/jobs", operation_id="taskmgr_list_jobs", responses=READ, response_model=JobPage)
    async def list_jobs(
        limit: Limit = 50,
        cursor: Cursor = None,
        state: Annotated[JobState | None, Query()] = None,
        q: Annotated[
            str | None,
            Query(
                max_length=200,
                pattern=TEXT_PATTERN,
                description="Text in the key, names or description (case-insensitive).",
            ),
        ] = None,
    ) -> Response:
        """Jobs ordered by key, optionally filtered by state and text."""
        size = min(limit, MAX_PAGE)
        after = _after_key(cursor)
        text = q or None  # the database filters: a page reads at most size + 1 rows
        # one more row tells whether there is a next page: read with the page (a second
        # call only for a full page of the largest size, which the service caps)
        jobs = await service.list_jobs(
            state=state, after=after, limit=min(size + 1, MAX_PAGE), text=text
        )
        if len(jobs) == size == MAX_PAGE:
            jobs += await service.list_jobs(state=state, after=jobs[-1].key, limit=1, text=text)
        more = len(jobs) > size
        jobs = jobs[:size]
        next_cursor = _job_cursor(jobs[-1].key) if more else None
        return wire.job_page(jobs, next_cursor)

    @router.post(
        "/jobs",
        operation_id="taskmgr_create_job",
        status_code=201,
        dependencies=writes,
        responses=WRITE,
    )
    async def create_job(
        body: JobCreate,
        request: Request,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> JobOut:
        """Create a job for a function registered in code (the body names it; nothing
        is ever imported). 409 ``job_exists`` when the key is taken."""
        options = body.model_dump(exclude_unset=True)
        key, func = options.pop("key"), options.pop("func")
        job = await service.create_job(key, func, actor=who, source=source, **options)
        response.headers["Location"] = str(request.url_for("taskmgr_get_job", job_key=job.key))
        return _job_response(job, response)

    @router.get(
        "/jobs/{job_key}",
        operation_id="taskmgr_get_job",
        name="taskmgr_get_job",
        responses=JOB_READ,
    )
    async def get_job(job_key: JobKey, response: Response) -> JobOut:
        """One job; its ``ETag`` is its version (send it back in ``If-Match``)."""
        return _job_response(await service.get_job(job_key), response)

    @router.patch(
        "/jobs/{job_key}",
        operation_id="taskmgr_update_job",
        dependencies=writes,
        responses={**WRITE, **problems(412)},
    )
    async def update_job(
        job_key: JobKey,
        body: JobPatch,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
        if_match: Annotated[
            str | None,
            Header(
                max_length=100,
                pattern=IF_MATCH_REGEX,
                description='The ETag of GET /jobs/{job_key}, e.g. "3".',
            ),
        ] = None,
    ) -> JobOut:
        """Change a job. With ``If-Match``, refuse (412) if it changed meanwhile."""
        expected = _expected_version(if_match)
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            return _job_response(await service.get_job(job_key), response)
        try:
            job = await service.update_job(
                job_key, expected_version=expected, actor=who, source=source, **changes
            )
        except VersionConflictError as exc:
            raise HTTPProblem(412, "version_conflict", exc.message) from exc
        return _job_response(job, response)

    @router.delete(
        "/jobs/{job_key}",
        operation_id="taskmgr_delete_job",
        status_code=204,
        dependencies=writes,
        responses=WRITE,
        response_class=Response,
    )
    async def delete_job(
        job_key: JobKey, who: Annotated[str | None, Depends(actor_dependency)], source: WriteSource
    ) -> Response:
        """Delete a job; its pending runs are cancelled, its history and audit log are
        kept."""
        await service.delete_job(job_key, actor=who, source=source)
        return Response(status_code=204)

    @router.post(
        "/jobs/{job_key}/trigger",
        operation_id="taskmgr_trigger_job",
        status_code=202,
        dependencies=writes,
        responses={**WRITE, **problems(429)},
    )
    async def trigger_job(
        job_key: JobKey,
        request: Request,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
        body: Annotated[TriggerRequest | None, Body()] = None,
    ) -> ExecutionOut:
        """Run the job now, once, as a ``manual`` execution (202: it is queued, and
        ``Location`` points at it). 409 when the job is paused or its overlap policy
        refuses, unless ``force``; 503 when nothing runs to execute it."""
        request_body = body if body is not None else TriggerRequest()
        await require_runner(service)
        key = (job_key, who or "")
        if limiter is not None:
            wait = limiter.acquire(key)
            if wait is not None:
                raise HTTPProblem(
                    429,
                    "rate_limited",
                    f"too many manual runs of {job_key!r}; retry in {math.ceil(wait)} s",
                    headers={"Retry-After": str(max(math.ceil(wait), 1))},
                )
        try:
            execution = await service.trigger_job(
                job_key,
                kwargs=request_body.kwargs,
                actor=who,
                force=request_body.force,
                source=source,
            )
        except BaseException:
            if limiter is not None:
                limiter.release(key)  # a refused run does not use the quota
            raise
        return accepted_run(request, response, execution)

    @router.post(
        "/jobs/{job_key}/pause",
        operation_id="taskmgr_pause_job",
        dependencies=writes,
        responses=WRITE,
    )
    async def pause_job(
        job_key: JobKey,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
        body: Annotated[PauseRequest | None, Body()] = None,
    ) -> JobOut:
        """Stop firing the job (idempotent), with an optional ``reason`` and ``until``
        (it resumes by itself then; 422 ``until_in_past`` if not in the future). Slots
        while paused are not run."""
        request = body if body is not None else PauseRequest()
        job = await service.pause_job(
            job_key, reason=request.reason, until=request.until, actor=who, source=source
        )
        return _job_response(job, response)

    @router.post(
        "/jobs/{job_key}/resume",
        operation_id="taskmgr_resume_job",
        dependencies=writes,
        responses=WRITE,
    )
    async def resume_job(
        job_key: JobKey,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> JobOut:
        """Fire the job again from now on (idempotent). A one-shot job whose time
        passed while it was paused keeps its slot: its misfire policy decides."""
        job = await service.resume_job(job_key, actor=who, source=source)
        return _job_response(job, response)

    @router.get("/jobs/{job_key}/preview", operation_id="taskmgr_preview_job", responses=JOB_READ)
    async def preview_job(
        job_key: JobKey,
        n: Annotated[int, Query(ge=1, description=f"Values above {MAX_PREVIEW} are clamped.")] = 5,
    ) -> PreviewOut:
        """The job's next ``n`` fire times."""
        times = await service.preview(job_key, min(n, MAX_PREVIEW))
        return PreviewOut(job_key=job_key, fire_times=times)


def _job_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _after_key(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, binascii.Error):
        key = ""
    if re.fullmatch(JOB_KEY_REGEX.strip("^$"), key) is None:
        raise HTTPProblem(
            422,
            "invalid_cursor",
            "cursor is not a next_cursor returned by this endpoint",
            errors=[FieldError(field="cursor", location="query", message="invalid cursor")],
        )
    return key


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = re.sub(r"[^0-9]", "", if_match) if re.search(IF_MATCH_REGEX, if_match) else ""
    if not tag:
        raise HTTPProblem(
            422,
            "invalid_if_match",
            'If-Match must be an ETag of this API (the job version, e.g. "3")',
            errors=[FieldError(field="If-Match", location="header", message="not a job ETag")],
        )
    return int(tag)


def _job_response(job: Job, response: Response) -> JobOut:
    response.headers["ETag"] = f'"{job.version}"'
    return JobOut.of(job)


async def require_runner(service: AsyncSchedulerService) -> None:
    """A manual run is a row that a started service executes: this one, or another
    instance sharing the database. With neither, it would wait forever: say so."""
    if service.running:
        return
    health = await service.health()
    if not health.database:
        # The driver's message may name the database: logged, never sent.
        logger.warning("manual run refused: %s", health.error)
        raise HTTPProblem(503, "storage_unavailable", DATABASE_UNAVAILABLE)
    if health.live_instances == 0:
        raise HTTPProblem(
            503,
            "service_not_running",
            "no scheduler instance is running to execute the job; start the service",
        )
