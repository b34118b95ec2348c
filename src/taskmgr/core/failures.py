"""What failed, across jobs: the failed attempts of the history grouped by job and
error type, for an operator's first look ("what is broken, since when, how often").

The grouping is the storage's (one statement on SQL), so the answer costs the same
however many attempts failed.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from taskmgr.core.models import ExecutionStatus

__all__ = ["FAILURE_STATUSES", "FailureGroup"]

#: The statuses of an attempt that failed: it raised, ran past its timeout, or its
#: owner died while it ran. (A missed or skipped slot did not run; a cancelled one was
#: stopped on purpose.)
FAILURE_STATUSES = (ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.LOST)


class FailureGroup(BaseModel):
    """The failed attempts of one job with one status and error type (``error_type``
    None: attempts that recorded none, e.g. runs marked ``lost`` by the reaper)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_key: str
    status: ExecutionStatus
    error_type: str | None
    #: How many attempts failed so.
    count: int
    #: How many runs they belong to (distinct chains: an attempt and its retries are one).
    runs: int
    #: The earliest and the latest ``completed_at`` of those attempts.
    first_seen: datetime
    last_seen: datetime
    #: The latest of those attempts (greatest ``(completed_at, id)``), and its message.
    last_execution_id: str
    last_message: str | None
