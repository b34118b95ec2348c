"""RFC 9457 ``application/problem+json`` errors, produced by the router itself.

FastAPI routers cannot register exception handlers (fastapi#1667), so the router
uses :class:`ProblemRoute` as its ``route_class``: its handler refuses writes a
browser may send for another site (see :mod:`.csrf`) and guards the request body
(size, media type, JSON shape; see :mod:`.limits`) before FastAPI parses it,
and turns every error raised while handling the request (auth dependencies,
validation, taskmgr errors) into a problem document. A host needs no handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from taskmgr import exceptions as exc_
from taskmgr.fastapi.csrf import guard_cross_site
from taskmgr.fastapi.errors import FieldError, HTTPProblem
from taskmgr.fastapi.limits import DEFAULT_MAX_BODY_BYTES, guard_body

__all__ = ["FieldError", "HTTPProblem", "Problem", "ProblemRoute", "problem_response"]

logger = logging.getLogger("taskmgr.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:taskmgr:problem:"

# Most specific first is not needed: the exception's MRO is walked in order.
_TASKMGR_ERRORS: dict[type[BaseException], tuple[int, str]] = {
    exc_.JobNotFoundError: (404, "job_not_found"),
    exc_.ExecutionNotFoundError: (404, "execution_not_found"),
    exc_.WindowNotFoundError: (404, "window_not_found"),
    exc_.WindowExistsError: (409, "window_exists"),
    exc_.WindowInPastError: (422, "window_in_past"),
    exc_.WindowOverlapError: (422, "window_overlap"),
    exc_.WindowJobNotFoundError: (422, "window_job_not_found"),
    exc_.InvalidWindowError: (422, "invalid_window"),
    exc_.FunctionNotRegisteredError: (422, "unknown_task"),
    exc_.NotFoundError: (404, "not_found"),
    exc_.JobExistsError: (409, "job_exists"),
    exc_.JobBusyError: (409, "already_running"),
    exc_.JobPausedError: (409, "job_paused"),
    exc_.JobOrphanedError: (409, "job_orphaned"),
    exc_.VersionConflictError: (409, "version_conflict"),
    exc_.ConflictError: (409, "conflict"),
    exc_.InvalidJobKeyError: (422, "invalid_job_key"),
    exc_.InvalidCronError: (422, "invalid_cron"),
    exc_.InvalidTimezoneError: (422, "invalid_timezone"),
    exc_.InvalidIntervalError: (422, "invalid_interval"),
    exc_.InvalidDatetimeError: (422, "invalid_datetime"),
    exc_.InvalidTriggerError: (422, "invalid_trigger"),
    exc_.InvalidAlertError: (422, "invalid_alert"),
    exc_.InvalidPolicyError: (422, "invalid_option"),
    exc_.InvalidWebhookError: (422, "invalid_webhook"),
    exc_.InvalidKwargsError: (422, "invalid_kwargs"),
    exc_.InvalidFunctionError: (422, "invalid_function"),
    exc_.UnknownDispatcherError: (422, "unknown_dispatcher"),
    exc_.PauseUntilPastError: (422, "until_in_past"),
    exc_.BackfillTooLargeError: (422, "backfill_too_large"),
    exc_.InvalidBackfillError: (422, "invalid_backfill"),
    exc_.InvalidInputError: (422, "invalid_input"),
    # The database refused a value of the request: sending it again fails the same way.
    exc_.DataRejectedError: (422, "data_rejected"),
    # The database is down or busy: retry later, like any dependency outage
    # (docs/guarantees.md, G9).
    exc_.StorageError: (503, "storage_unavailable"),
    exc_.ServiceStateError: (503, "service_not_running"),
    exc_.TaskmgrError: (400, "taskmgr_error"),
}

#: The detail of a 503 for a database failure; what failed is in the server log.
DATABASE_UNAVAILABLE = "the database is unavailable; retry later (details are in the server log)"
_STORAGE_DETAILS = {
    "data_rejected": "the database refused a value of the request (details are in the server log)"
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


class Problem(BaseModel):
    """An RFC 9457 problem document, with a stable ``code`` and, for 422, ``errors``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:taskmgr:problem:job_not_found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "no job with key 'nightly-report'",
                    "instance": "/admin/jobs/jobs/nightly-report",
                    "code": "job_not_found",
                }
            ]
        },
    )

    type: str = Field(description="A URI naming the kind of problem: urn:taskmgr:problem:<code>.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str = Field(description="A stable identifier for the problem, e.g. job_not_found.")
    errors: list[FieldError] | None = None


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc and loc[0] in ("body", "query", "path", "header") else None
        path = loc[1:] if location else loc
        field = ".".join(path) or None
        # Never echo the input: it may be large, or a secret sent in the wrong field.
        errors.append(
            FieldError(
                field=field,
                location=location,
                message=str(error.get("msg", "invalid")),
                type=str(error.get("type", "")) or None,
            )
        )
    return errors


def _describe(error: BaseException) -> tuple[int, str, str | None, list[FieldError] | None]:
    """(status, code, detail, field errors) for an error raised while handling a request."""
    if isinstance(error, HTTPProblem):
        return error.status_code, error.code, str(error.detail), error.errors
    if isinstance(error, HTTPException):
        code = _HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
        detail = error.detail if isinstance(error.detail, str) else None
        return error.status_code, code, detail, None
    if isinstance(error, RequestValidationError):
        return 422, "validation_error", "the request is invalid", _validation_errors(error)
    if isinstance(error, exc_.TaskmgrError):
        for kind in type(error).__mro__:
            if kind in _TASKMGR_ERRORS:
                status, code = _TASKMGR_ERRORS[kind]
                break
        else:  # pragma: no cover - TaskmgrError itself is in the table
            status, code = 400, "taskmgr_error"
        errors = None
        if isinstance(error, exc_.InvalidInputError):
            message = error.message
            if error.field and message.startswith(f"{error.field}: "):
                message = message[len(error.field) + 2 :]
            errors = [FieldError(field=error.field, message=message, type=code)]
        elif isinstance(error, exc_.FunctionNotRegisteredError):
            errors = [FieldError(field="func", message=error.message, type=code)]
        elif isinstance(error, exc_.StorageError):
            # The driver's message may name the database (URL, host, file) or quote
            # the input: the details go to the server log (problem_response) only.
            detail = _STORAGE_DETAILS.get(code, DATABASE_UNAVAILABLE)
            rejected = [FieldError(message=detail, type=code)] if status == 422 else None
            return status, code, detail, rejected
        return status, code, error.message, errors
    return 500, "internal_error", "an unexpected error occurred; see the server log", None


def _printable(text: str | None) -> Any:
    # A field path or message may quote hostile input (a lone surrogate): escape what
    # UTF-8 cannot carry rather than fail while reporting the error.
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_response(error: BaseException, request: Request | None = None) -> Response:
    """The problem+json response for ``error`` (any exception; unknown ones give 500)."""
    status, code, detail, errors = _describe(error)
    if status >= 500 or isinstance(error, exc_.StorageError):
        # 503s are expected during outages and a value the database refused is the
        # request's; anything else is a bug worth a traceback. The database's own
        # message (it may name the database) is logged here, never sent.
        log = logger.warning if status in (422, 503) else logger.error
        log(
            "%s %s failed with %d: %r",
            request.method if request else "-",
            request.url.path if request else "-",
            status,
            error,
            exc_info=status >= 500 and status != 503,
        )
    problem = Problem(
        type=TYPE_PREFIX + code,
        title=_title(status),
        status=status,
        detail=_printable(detail),
        instance=_printable(request.url.path) if request is not None else None,
        code=code,
        errors=[
            error.model_copy(
                update={"field": _printable(error.field), "message": _printable(error.message)}
            )
            for error in errors
        ]
        if errors is not None
        else None,
    )
    headers = getattr(error, "headers", None) if isinstance(error, HTTPException) else None
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


class ProblemRoute(APIRoute):
    """An ``APIRoute`` whose errors are problem+json, whose writes must come from
    the page's own origin (:func:`~taskmgr.fastapi.csrf.guard_cross_site`) and whose
    body is guarded.

    ``max_body_bytes`` caps request bodies (checked while reading the stream, so a
    chunked body cannot get past it); :func:`taskmgr.fastapi.create_router` makes a
    subclass with the configured value.
    """

    max_body_bytes: ClassVar[int] = DEFAULT_MAX_BODY_BYTES

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        max_body = self.max_body_bytes

        async def handle(request: Request) -> Response:
            try:
                guard_cross_site(request)
                guarded = await guard_body(request, max_body)
                return await handler(guarded)
            except Exception as error:
                return self.render_error(error, request)

        return handle

    def render_error(self, error: Exception, request: Request) -> Response:
        """The response for an error raised while handling ``request``."""
        return problem_response(error, request)
