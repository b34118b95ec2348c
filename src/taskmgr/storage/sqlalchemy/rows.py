"""Conversions between table rows and the public models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmgr.schemas import Execution, Job, RetryBackoff
from taskmgr.triggers import parse_trigger

__all__ = ["execution_from_row", "execution_values", "job_from_row", "job_values"]


def job_values(job: Job) -> dict[str, Any]:
    """Column values for a job row."""
    return {
        "id": job.id,
        "job_key": job.key,
        "func": job.func,
        "names": dict(job.names),
        "description": job.description,
        "trigger": job.trigger.model_dump(mode="json"),
        "kwargs": dict(job.kwargs),
        "max_instances": job.max_instances,
        "overlap_policy": job.overlap_policy.value,
        "misfire_grace_time": job.misfire_grace_time,
        "coalesce": job.coalesce,
        "max_retries": job.max_retries,
        "retry_backoff_base": job.retry_backoff.base,
        "retry_backoff_max": job.retry_backoff.max,
        "retry_jitter": job.retry_backoff.jitter,
        "timeout": job.timeout,
        "queue": job.queue,
        "state": job.state.value,
        "source": job.source.value,
        "fingerprint": job.fingerprint,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "version": job.version,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def job_from_row(row: Mapping[Any, Any]) -> Job:
    return Job.model_validate(
        {
            "id": row["id"],
            "key": row["job_key"],
            "func": row["func"],
            "trigger": parse_trigger(row["trigger"]),
            "names": row["names"],
            "description": row["description"],
            "kwargs": row["kwargs"],
            "max_instances": row["max_instances"],
            "overlap_policy": row["overlap_policy"],
            "misfire_grace_time": row["misfire_grace_time"],
            "coalesce": row["coalesce"],
            "max_retries": row["max_retries"],
            "retry_backoff": RetryBackoff(
                base=row["retry_backoff_base"],
                max=row["retry_backoff_max"],
                jitter=row["retry_jitter"],
            ),
            "timeout": row["timeout"],
            "queue": row["queue"],
            "state": row["state"],
            "source": row["source"],
            "fingerprint": row["fingerprint"],
            "next_run_at": row["next_run_at"],
            "last_run_at": row["last_run_at"],
            "version": row["version"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
    )


_EXECUTION_FIELDS = tuple(Execution.model_fields)


def execution_values(execution: Execution) -> dict[str, Any]:
    """Column values for an execution row (columns are named like the model's fields)."""
    values = {name: getattr(execution, name) for name in _EXECUTION_FIELDS}
    values["trigger"] = execution.trigger.value
    values["status"] = execution.status.value
    return values


def execution_from_row(row: Mapping[Any, Any]) -> Execution:
    return Execution.model_validate(dict(row))
