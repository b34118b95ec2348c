"""What Celery's own tools see of an execution: its task's state.

A message's task ends as its execution did: ``SUCCESS`` for a run that succeeded (or a
message that started nothing), ``FAILURE`` with the error for a run that failed or
timed out, so Flower, ``celery events`` and a result backend tell the truth. The task
fails *after* taskmgr recorded the outcome (and the retry, if one is due), with
:class:`ExecutionFailedError`: an error Celery expects (the task's ``throws``), so it
neither retries the task nor logs a second traceback, and the message is acknowledged.
"""

from __future__ import annotations

from typing import Any

from taskmgr.core.models import ExecutionStatus
from taskmgr.exceptions import TaskmgrError
from taskmgr.storage.base import Outcome

__all__ = ["ExecutionFailedError", "task_result"]

#: The outcomes that fail their Celery task.
FAILED = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT})


class ExecutionFailedError(TaskmgrError):
    """The execution a Celery message ran failed or timed out (its Celery task's
    error). The execution's history row holds the job's own error and traceback; its
    retry, if one is due, is taskmgr's, never Celery's."""


def task_result(outcome: Outcome, job_key: str) -> dict[str, Any]:
    """The Celery task's return value for an execution that ended as ``outcome``.

    :raises ExecutionFailedError: the execution failed or timed out.
    """
    status = outcome.status.value
    if outcome.status in FAILED:
        error = outcome.error_message or status
        ended = "timed out" if outcome.status is ExecutionStatus.TIMEOUT else status
        if outcome.error_type:
            error = f"{outcome.error_type}: {error}"
        retry = (
            f"; attempt {outcome.retry.attempt} is due at {outcome.retry.due_at.isoformat()}"
            if outcome.retry is not None
            else ""
        )
        raise ExecutionFailedError(
            f"execution {outcome.execution_id} of {job_key!r} {ended}: {error}{retry}"
        )
    return {"execution_id": outcome.execution_id, "status": status}
