"""The HTTP error type the router raises itself, and the field errors of a 422."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

__all__ = ["FieldError", "HTTPProblem"]


class FieldError(BaseModel):
    """One invalid field of a 422 problem."""

    model_config = ConfigDict(extra="forbid")

    #: Dotted path of the field (``"kwargs.retries"``, ``"limit"``), None for the whole body.
    field: str | None = None
    #: ``body``, ``query``, ``path`` or ``header`` when known.
    location: str | None = None
    message: str
    #: Machine-readable kind of error (pydantic's error type, or the problem code).
    type: str | None = None


class HTTPProblem(HTTPException):
    """An HTTP error with a stable ``code`` and optional field errors."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers=dict(headers) if headers else None)
        self.code = code
        self.errors = list(errors) if errors is not None else None
