"""What a running job can learn about its own execution, without taking a parameter."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import datetime

__all__ = ["ExecutionContext", "current_execution"]


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
