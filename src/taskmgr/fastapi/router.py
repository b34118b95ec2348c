"""``create_router``: taskmgr's JSON API (and dashboard) as a FastAPI ``APIRouter``.

Built by a factory that takes everything it depends on as arguments (the service,
the host's auth dependencies, limits), like fastapi-users' routers, so a host can
mount it under any prefix, several times, and tests can build throwaway apps.
Routes are plain ``def``: FastAPI runs them in its thread pool over the sync core.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time, and some name closure variables (the host's ``actor`` dependency).

import base64
import binascii
import math
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime
from starlette.exceptions import HTTPException

from taskmgr.core.models import ExecutionStatus, Job, JobState
from taskmgr.exceptions import VersionConflictError
from taskmgr.fastapi.dashboard import add_dashboard_routes
from taskmgr.fastapi.errors import FieldError, HTTPProblem
from taskmgr.fastapi.limits import DEFAULT_MAX_BODY_BYTES, RateLimit, TriggerLimiter
from taskmgr.fastapi.problems import PROBLEM_MEDIA_TYPE, Problem, ProblemRoute
from taskmgr.fastapi.schemas import (
    JOB_KEY_REGEX,
    CleanupRequest,
    CleanupResult,
    ExecutionOut,
    ExecutionPageOut,
    HealthOut,
    InstanceOut,
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    PreviewOut,
    SessionOut,
    TriggerRequest,
)
from taskmgr.service import SchedulerService
from taskmgr.service.arguments import MAX_PAGE

__all__ = ["create_router"]

#: Largest ``n`` of the preview endpoint; larger values are clamped.
MAX_PREVIEW = 100

_STATUS_TEXT = {
    401: "Missing or invalid credentials.",
    403: "The credentials do not allow this operation.",
    404: "No such job or execution.",
    409: "The job's state refuses the operation (exists, paused, busy, orphaned).",
    412: "If-Match does not match the job's current version.",
    413: "The request body is too large.",
    415: "The request body is not application/json.",
    422: "The input is invalid; `errors` names the fields.",
    429: "Too many manual runs of this job; see Retry-After.",
    503: "The database is unavailable, or nothing is running to execute the job.",
}

JobKey = Annotated[
    str,
    Path(pattern=JOB_KEY_REGEX, max_length=128, examples=["reports.nightly"]),
]
Limit = Annotated[int, Query(ge=1, description=f"Page size; values above {MAX_PAGE} are clamped.")]
Statuses = Annotated[list[ExecutionStatus] | None, Query(description="Any of these statuses.")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the last page.")]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": _STATUS_TEXT[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


_READ = _problems(401, 403, 422, 503)
_JOB_READ = _problems(401, 403, 404, 422, 503)
_WRITE = _problems(401, 403, 404, 409, 413, 415, 422, 503)


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


def _matches(job: Job, text: str) -> bool:
    text = text.casefold()
    haystack = [job.key, job.description or "", *job.names.values()]
    return any(text in value.casefold() for value in haystack)


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
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


def _anonymous() -> str | None:
    return None


def _route_class(max_body_bytes: int) -> type[ProblemRoute]:
    return type("TaskmgrRoute", (ProblemRoute,), {"max_body_bytes": max_body_bytes})


class _SessionRoute(ProblemRoute):
    """The probe of the write dependencies: a refusal (403) means read-only, not an error."""

    def render_error(self, error: Exception, request: Request) -> Response:
        if isinstance(error, HTTPException) and error.status_code == 403:
            return JSONResponse(SessionOut(can_write=False).model_dump())
        return super().render_error(error, request)


def create_router(
    service: SchedulerService,
    *,
    dependencies: Sequence[DependsParam] = (),
    write_dependencies: Sequence[DependsParam] = (),
    public: bool = False,
    dashboard: bool = True,
    actor: Callable[..., str | None] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    trigger_rate_limit: RateLimit | None = None,
    dashboard_write: bool | None = None,
) -> APIRouter:
    """The JSON API (and, with ``dashboard``, the dashboard at ``GET /``) for ``service``.

    :param dependencies: applied to every route, the dashboard included: your auth
        (e.g. ``[Depends(require_user)]``). Required unless ``public=True``.
    :param write_dependencies: added to the routes that change something (create,
        change, delete, trigger, pause, resume, cleanup). Raise 403 for a principal
        that may read but not write: the dashboard then hides its actions.
    :param public: build without auth dependencies (a local demo, or auth done by a
        proxy in front of the app). Never the default (DESIGN G6).
    :param actor: a dependency returning who triggers a manual run (stored in the
        execution's ``actor``), e.g. the user name from your auth; default none.
    :param max_body_bytes: larger request bodies are refused with 413 before parsing.
    :param trigger_rate_limit: at most ``count`` manual runs per ``per_seconds`` per
        job and actor in this process; more get 429 with ``Retry-After``. Default off.
    :param dashboard_write: whether the dashboard offers actions (run now, pause,
        resume) to callers the write dependencies let through; default: the
        service's ``dashboard_write`` setting (``TASKMGR_DASHBOARD_WRITE``). The JSON
        API's writes are governed by ``write_dependencies`` alone.
    :raises ValueError: no ``dependencies`` and not ``public``.
    """
    if not dependencies and not public:
        raise ValueError(
            "create_router() needs an auth dependency, e.g. dependencies=[Depends(require_user)]; "
            "pass public=True to serve taskmgr's API without one"
        )
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ValueError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    router = APIRouter(dependencies=list(dependencies), route_class=_route_class(max_body_bytes))
    writes = list(write_dependencies)
    limiter = TriggerLimiter(trigger_rate_limit) if trigger_rate_limit is not None else None
    actor_dependency = actor if actor is not None else _anonymous

    # -- jobs ------------------------------------------------------------------------

    @router.get("/jobs", operation_id="taskmgr_list_jobs", responses=_READ)
    def list_jobs(
        limit: Limit = 50,
        cursor: Cursor = None,
        state: Annotated[JobState | None, Query()] = None,
        q: Annotated[
            str | None, Query(max_length=200, description="Text in the key, names or description.")
        ] = None,
    ) -> JobPage:
        """Jobs ordered by key, optionally filtered by state and text."""
        size = min(limit, MAX_PAGE)
        after = _after_key(cursor)
        if not q:
            jobs = service.list_jobs(state=state, after=after, limit=size)
            if len(jobs) == size:  # one more row tells whether there is a next page
                jobs += service.list_jobs(state=state, after=jobs[-1].key, limit=1)
        else:
            jobs = []
            while len(jobs) <= size:  # scan in pages until this page is full
                batch = service.list_jobs(state=state, after=after, limit=MAX_PAGE)
                jobs.extend(job for job in batch if _matches(job, q))
                if len(batch) < MAX_PAGE:
                    break
                after = batch[-1].key
        more = len(jobs) > size
        jobs = jobs[:size]
        next_cursor = _job_cursor(jobs[-1].key) if more else None
        return JobPage(items=[JobOut.of(job) for job in jobs], next_cursor=next_cursor)

    @router.post(
        "/jobs",
        operation_id="taskmgr_create_job",
        status_code=201,
        dependencies=writes,
        responses=_WRITE,
    )
    def create_job(body: JobCreate, request: Request, response: Response) -> JobOut:
        """Create a job for a function registered in code (the body names it; nothing
        is ever imported). 409 ``job_exists`` when the key is taken."""
        options = body.model_dump(exclude_unset=True)
        key, func = options.pop("key"), options.pop("func")
        job = service.create_job(key, func, **options)
        response.headers["Location"] = str(request.url_for("taskmgr_get_job", job_key=job.key))
        return _job_response(job, response)

    @router.get(
        "/jobs/{job_key}",
        operation_id="taskmgr_get_job",
        name="taskmgr_get_job",
        responses=_JOB_READ,
    )
    def get_job(job_key: JobKey, response: Response) -> JobOut:
        """One job; its ``ETag`` is its version (send it back in ``If-Match``)."""
        return _job_response(service.get_job(job_key), response)

    @router.patch(
        "/jobs/{job_key}",
        operation_id="taskmgr_update_job",
        dependencies=writes,
        responses={**_WRITE, **_problems(412)},
    )
    def update_job(
        job_key: JobKey,
        body: JobPatch,
        response: Response,
        if_match: Annotated[str | None, Header(max_length=100)] = None,
    ) -> JobOut:
        """Change a job. With ``If-Match``, refuse (412) if it changed meanwhile."""
        expected = _expected_version(if_match)
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            return _job_response(service.get_job(job_key), response)
        try:
            job = service.update_job(job_key, expected_version=expected, **changes)
        except VersionConflictError as exc:
            raise HTTPProblem(412, "version_conflict", exc.message) from exc
        return _job_response(job, response)

    @router.delete(
        "/jobs/{job_key}",
        operation_id="taskmgr_delete_job",
        status_code=204,
        dependencies=writes,
        responses=_WRITE,
        response_class=Response,
    )
    def delete_job(job_key: JobKey) -> Response:
        """Delete a job; its pending runs are cancelled, its history is kept."""
        service.delete_job(job_key)
        return Response(status_code=204)

    @router.post(
        "/jobs/{job_key}/trigger",
        operation_id="taskmgr_trigger_job",
        status_code=202,
        dependencies=writes,
        responses={**_WRITE, **_problems(429)},
    )
    def trigger_job(
        job_key: JobKey,
        request: Request,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        body: Annotated[TriggerRequest | None, Body()] = None,
    ) -> ExecutionOut:
        """Run the job now, once, as a ``manual`` execution (202: it is queued, and
        ``Location`` points at it). 409 when the job is paused or its overlap policy
        refuses, unless ``force``; 503 when nothing runs to execute it."""
        request_body = body if body is not None else TriggerRequest()
        _require_runner(service)
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
            execution = service.trigger_job(
                job_key, kwargs=request_body.kwargs, actor=who, force=request_body.force
            )
        except BaseException:
            if limiter is not None:
                limiter.release(key)  # a refused run does not use the quota
            raise
        location = request.url_for("taskmgr_get_execution", execution_id=execution.id)
        response.headers["Location"] = str(location)
        return ExecutionOut.of(execution)

    @router.post(
        "/jobs/{job_key}/pause",
        operation_id="taskmgr_pause_job",
        dependencies=writes,
        responses=_WRITE,
    )
    def pause_job(job_key: JobKey, response: Response) -> JobOut:
        """Stop firing the job (idempotent). Slots while paused are not run."""
        return _job_response(service.pause_job(job_key), response)

    @router.post(
        "/jobs/{job_key}/resume",
        operation_id="taskmgr_resume_job",
        dependencies=writes,
        responses=_WRITE,
    )
    def resume_job(job_key: JobKey, response: Response) -> JobOut:
        """Fire the job again from now on (idempotent)."""
        return _job_response(service.resume_job(job_key), response)

    @router.get("/jobs/{job_key}/preview", operation_id="taskmgr_preview_job", responses=_JOB_READ)
    def preview_job(
        job_key: JobKey,
        n: Annotated[int, Query(ge=1, description=f"Values above {MAX_PREVIEW} are clamped.")] = 5,
    ) -> PreviewOut:
        """The job's next ``n`` fire times."""
        times = service.preview(job_key, min(n, MAX_PREVIEW))
        return PreviewOut(job_key=job_key, fire_times=times)

    _history_routes(router, service)
    _system_routes(router, service, writes, dashboard_write)
    if dashboard:
        add_dashboard_routes(router)
    return router


def _require_runner(service: SchedulerService) -> None:
    """A manual run is a row that a started service executes: this one, or another
    instance sharing the database. With neither, it would wait forever: say so."""
    if service.running:
        return
    health = service.health()
    if not health.database:
        raise HTTPProblem(
            503, "storage_unavailable", f"the database is unavailable: {health.error}"
        )
    if health.live_instances == 0:
        raise HTTPProblem(
            503,
            "service_not_running",
            "no scheduler instance is running to execute the job; start the service",
        )


def _history_routes(router: APIRouter, service: SchedulerService) -> None:
    @router.get(
        "/jobs/{job_key}/executions",
        operation_id="taskmgr_list_job_executions",
        responses=_JOB_READ,
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

    @router.get("/executions", operation_id="taskmgr_list_executions", responses=_READ)
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
        responses=_problems(401, 403, 404, 422, 503),
    )
    def get_execution(
        execution_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$")],
    ) -> ExecutionOut:
        """One execution, with its error and traceback."""
        return ExecutionOut.of(service.get_execution(execution_id))


def _system_routes(
    router: APIRouter,
    service: SchedulerService,
    writes: list[DependsParam],
    dashboard_write: bool | None,
) -> None:
    @router.get("/instances", operation_id="taskmgr_list_instances", responses=_READ)
    def list_instances() -> list[InstanceOut]:
        """Scheduler instances sharing the database, newest first."""
        now = service.clock.now()
        return [InstanceOut.of(instance, now) for instance in service.list_instances()]

    @router.get(
        "/health",
        operation_id="taskmgr_get_health",
        response_model=HealthOut,
        responses={
            **_READ,
            503: {"model": HealthOut, "description": "The database is unavailable."},
        },
    )
    def get_health() -> Any:
        """Database reachable, schema current, live instances and the oldest overdue job.
        503 (with the same body) when the database does not answer."""
        health = HealthOut.of(service.health())
        if not health.database:
            return JSONResponse(health.model_dump(mode="json"), status_code=503)
        return health

    @router.post(
        "/maintenance/cleanup",
        operation_id="taskmgr_cleanup_history",
        dependencies=writes,
        responses=_problems(401, 403, 413, 415, 422, 503),
    )
    def cleanup_history(body: CleanupRequest) -> CleanupResult:
        """Delete finished executions older than ``retention_days`` (pending and
        running ones are never deleted)."""
        return CleanupResult(deleted=service.cleanup_history(body.retention_days))

    write_in_dashboard = (
        service.settings.dashboard_write if dashboard_write is None else dashboard_write
    )

    def _session() -> SessionOut:
        """What the caller may do (``can_write``: the write dependencies let it through
        and the dashboard's write mode is on)."""
        return SessionOut(can_write=write_in_dashboard)

    router.add_api_route(
        "/session",
        _session,
        methods=["GET"],
        operation_id="taskmgr_get_session",
        dependencies=writes,
        responses=_problems(401, 503),
        response_model=SessionOut,
        route_class_override=type("TaskmgrSessionRoute", (_SessionRoute, router.route_class), {}),
    )
