"""What the routes of :func:`~taskmgr.fastapi.create_router` share: the path and query
parameters they declare, and the problem responses each one documents.
"""

from typing import Annotated, Any

from fastapi import Path, Query, Request, Response

from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger
from taskmgr.fastapi.locations import url_of
from taskmgr.fastapi.problems import PROBLEM_MEDIA_TYPE, Problem
from taskmgr.fastapi.schemas import JOB_KEY_REGEX, ExecutionOut
from taskmgr.fastapi.wire import execution_fields
from taskmgr.service.arguments import MAX_PAGE

__all__ = [
    "JOB_READ",
    "MAX_PAGE",
    "READ",
    "WRITE",
    "Cursor",
    "ExecutionId",
    "JobKey",
    "Limit",
    "Statuses",
    "Triggers",
    "accepted_run",
    "problems",
]

_STATUS_TEXT = {
    401: "Missing or invalid credentials.",
    403: "The credentials do not allow this operation, or a write came from another "
    "origin or without a JSON Content-Type or an X-Taskmgr-Action header.",
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
ExecutionId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Limit = Annotated[int, Query(ge=1, description=f"Page size; values above {MAX_PAGE} are clamped.")]
Statuses = Annotated[
    list[ExecutionStatus] | None,
    Query(description="Any of these statuses (repeat the parameter)."),
]
Triggers = Annotated[
    list[ExecutionTrigger] | None,
    Query(description="Any of these triggers (repeat the parameter)."),
]
#: A page's ``next_cursor``: opaque base64url text, valid only as the API issued it.
CURSOR_REGEX = r"^[A-Za-z0-9_-]+$"
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=CURSOR_REGEX,
        description="next_cursor of the last page (opaque: only values the API issued).",
    ),
]


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses: problem+json bodies."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": _STATUS_TEXT[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


#: The errors of a read that names no job, of one that does, and of a write.
READ = problems(401, 403, 422, 503)
JOB_READ = problems(401, 403, 404, 422, 503)
WRITE = problems(401, 403, 404, 409, 413, 415, 422, 503)


def accepted_run(request: Request, response: Response, execution: Execution) -> ExecutionOut:
    """The body of a 202 for a run asked for (triggered or deferred), its ``Location``
    the run's own URL (to poll it)."""
    location = url_of(request, "taskmgr_get_execution", "execution_id", execution.id)
    response.headers["Location"] = location
    return ExecutionOut.model_validate(execution_fields(execution))
