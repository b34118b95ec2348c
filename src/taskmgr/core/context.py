"""What a running job can learn about its own execution, without taking a parameter;
and the log filter that puts it on the log records logged while it runs."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from datetime import datetime

__all__ = ["ExecutionContext", "ExecutionLogFilter", "current_execution"]


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    execution_id: str
    job_key: str
    scheduled_for: datetime
    attempt: int
    trigger: str


_current: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "taskmgr_execution", default=None
)


def current_execution() -> ExecutionContext | None:
    """The execution the calling code runs in, or None outside a taskmgr job.

    Works in sync jobs (on their worker thread) and in ``async def`` jobs.
    """
    return _current.get()


def set_current(context: ExecutionContext | None) -> contextvars.Token[ExecutionContext | None]:
    return _current.set(context)


def reset_current(token: contextvars.Token[ExecutionContext | None]) -> None:
    _current.reset(token)


class ExecutionLogFilter(logging.Filter):
    """Puts the running execution on every log record logged inside a job (the job's
    own, its libraries', taskmgr's): ``taskmgr_execution_id``, ``taskmgr_job_key``,
    ``taskmgr_attempt`` and ``taskmgr_scheduled_for`` (ISO 8601), the fields taskmgr's
    own records carry as ``extra``. Fields a record already has are kept.

    Add it to a handler (``handler.addFilter(ExecutionLogFilter())``, or ``"()":
    "taskmgr.ExecutionLogFilter"`` in ``dictConfig``) so it sees the records of every
    logger. ``missing`` is given to records logged outside a job (for a format string
    that names the fields, e.g. ``"-"``); by default they get no field.

    A Celery worker adds one (``missing="-"``) to the handlers Celery sets up.
    """

    FIELDS = ("taskmgr_execution_id", "taskmgr_job_key", "taskmgr_attempt", "taskmgr_scheduled_for")

    def __init__(self, name: str = "", *, missing: str | None = None) -> None:
        super().__init__(name)
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        values: tuple[object, ...]
        if context is not None:
            values = (
                context.execution_id,
                context.job_key,
                context.attempt,
                context.scheduled_for.isoformat(),
            )
        elif self.missing is not None:
            values = (self.missing,) * len(self.FIELDS)
        else:
            return True
        fields = record.__dict__
        for field, value in zip(self.FIELDS, values, strict=True):
            if field not in fields:
                fields[field] = value
        return True
