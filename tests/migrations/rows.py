"""Rows written straight into an older schema by the migration tests, before they
upgrade it: a job and a finished run, with the columns every revision since tm0001
has (a test adds the columns of the revision it starts from)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FIRST_RUN_ID = "00000000-0000-4000-8000-000000000001"


def job_row(job_id: int, key: str, **columns: Any) -> dict[str, Any]:
    """An interval job every minute from ``T0 - 1 h``, active, due at ``T0``."""
    row: dict[str, Any] = {
        "id": job_id,
        "job_key": key,
        "func": "tests.jobs.witness.witness",
        "names": {},
        "trigger": {"type": "interval", "every": 60, "start": "2026-06-01T11:00:00Z"},
        "kwargs": {},
        "max_instances": 1,
        "overlap_policy": "skip",
        "misfire_grace_time": None,
        "coalesce": True,
        "max_retries": 0,
        "retry_backoff_base": 1.0,
        "retry_backoff_max": 300.0,
        "retry_jitter": 0.0,
        "state": "active",
        "source": "api",
        "next_run_at": T0,
        "version": 1,
        "created_at": T0 - 60 * MINUTE,
        "updated_at": T0 - 60 * MINUTE,
    }
    row.update(columns)
    return row


def run_row(scheduled_for: datetime, **columns: Any) -> dict[str, Any]:
    """The successful run of job 1 (``nightly``) for the slot ``scheduled_for``."""
    row: dict[str, Any] = {
        "id": FIRST_RUN_ID,
        "job_id": 1,
        "job_key": "nightly",
        "scheduled_for": scheduled_for,
        "attempt": 1,
        "chain_id": FIRST_RUN_ID,
        "trigger": "schedule",
        "status": "success",
        "due_at": scheduled_for,
        "queued": False,
        "kwargs": {},
        "created_at": scheduled_for,
        "completed_at": scheduled_for,
    }
    row.update(columns)
    return row
