"""Conversions between table rows and the public models."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Job,
    JobSource,
    JobState,
    OverlapPolicy,
    RetryBackoff,
)
from taskmgr.core.triggers import (
    MAX_DATETIME,
    MAX_INTERVAL,
    MIN_DATETIME,
    MIN_INTERVAL,
    Interval,
    TriggerSpec,
    parse_trigger,
)
from taskmgr.storage.base import NewExecution
from taskmgr.storage.common import execution_from_new

__all__ = [
    "execution_from_row",
    "execution_values",
    "insert_untaken",
    "job_from_row",
    "job_values",
    "trusted_model",
]


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
        "concurrency_key": job.concurrency_key,
        "misfire_grace_time": job.misfire_grace_time,
        "coalesce": job.coalesce,
        "max_retries": job.max_retries,
        "retry_backoff_base": job.retry_backoff.base,
        "retry_backoff_max": job.retry_backoff.max,
        "retry_jitter": job.retry_backoff.jitter,
        "timeout": job.timeout,
        "queue": job.queue,
        "retention": job.retention,
        "dispatch": job.dispatch,
        "alert_late_after": job.alert_late_after,
        "alert_failures": job.alert_failures,
        "alert_max_runtime": job.alert_max_runtime,
        "alert_no_success_within": job.alert_no_success_within,
        "exclude_dates": [day.isoformat() for day in job.exclude_dates] or None,
        "state": job.state.value,
        "source": job.source.value,
        "fingerprint": job.fingerprint,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "version": job.version,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "paused_by": job.paused_by,
        "paused_reason": job.paused_reason,
        "paused_at": job.paused_at,
        "paused_until": job.paused_until,
    }


# Rows read back from taskmgr's own tables were validated when they were written (every
# write goes through the models), so reading them skips validation: the models are
# built with ``model_construct`` from values converted to their exact field types.
# Input from users (definitions, changes, new executions) is still validated.

#: Parsed trigger specs by their stored JSON (a job's trigger rarely changes, and a
#: claim reads the same jobs again and again). Bounded: cleared when it grows past
#: _TRIGGER_CACHE_MAX entries.
_TRIGGER_CACHE_MAX = 20_000
_triggers: dict[tuple[int, int], tuple[Any, TriggerSpec]] = {}
_triggers_lock = threading.Lock()


def _trigger(job_id: int, version: int, stored: Any) -> TriggerSpec:
    key = (job_id, version)
    cached = _triggers.get(key)
    if cached is not None and cached[0] == stored:
        return cached[1]
    spec = _stored_interval(stored) or parse_trigger(stored)
    with _triggers_lock:
        if len(_triggers) >= _TRIGGER_CACHE_MAX:
            _triggers.clear()
        _triggers[key] = (stored, spec)
    return spec


_MIN_EVERY = MIN_INTERVAL.total_seconds()
_MAX_EVERY = MAX_INTERVAL.total_seconds()


def _stored_interval(stored: Any) -> Interval | None:
    """An :class:`Interval` exactly as taskmgr stores one (``{"type": "interval",
    "every": seconds, "start": "...Z"}``), built without pydantic's validators; None
    for any other shape (then :func:`parse_trigger` validates it)."""
    if not isinstance(stored, dict) or stored.keys() != _INTERVAL_KEYS:
        return None
    every, start = stored["every"], stored["start"]
    if stored["type"] != "interval" or type(every) not in (int, float) or type(start) is not str:
        return None
    if not _MIN_EVERY <= every <= _MAX_EVERY or not start.endswith("Z"):
        return None
    try:
        moment = datetime.fromisoformat(start)
    except ValueError:
        return None
    if moment.tzinfo is not UTC or not MIN_DATETIME <= moment < MAX_DATETIME:
        return None
    return trusted_model(
        Interval, {"type": "interval", "every": timedelta(seconds=every), "start": moment}
    )


_INTERVAL_KEYS = {"type", "every", "start"}

_backoffs: dict[tuple[float, float, float], RetryBackoff] = {}


def _backoff(base: float, maximum: float, jitter: float) -> RetryBackoff:
    key = (base, maximum, jitter)
    backoff = _backoffs.get(key)
    if backoff is None:
        backoff = RetryBackoff(base=base, max=maximum, jitter=jitter)  # validated once
        if len(_backoffs) < 1000:
            _backoffs[key] = backoff
    return backoff


ModelT = TypeVar("ModelT", bound=BaseModel)


def trusted_model(cls: type[ModelT], data: dict[str, Any]) -> ModelT:
    """``cls.model_construct(**data)`` for ``data`` holding every field, in the order
    the model declares them, with values of the field types. Like ``model_construct``
    it validates nothing; it also skips its per-field bookkeeping (~10x faster)."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", data)
    object.__setattr__(model, "__pydantic_fields_set__", set(data))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


# Enum members by stored value: a dict lookup instead of an Enum call per row (an
# unknown value still raises KeyError, as the Enum call would raise ValueError).
_OVERLAP = {member.value: member for member in OverlapPolicy}
_STATE = {member.value: member for member in JobState}
_SOURCE = {member.value: member for member in JobSource}
_EXECUTION_TRIGGER = {member.value: member for member in ExecutionTrigger}
_STATUS = {member.value: member for member in ExecutionStatus}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _dates(value: Any) -> tuple[date, ...]:
    """A job's exclusion dates, stored as a JSON list of ISO dates (NULL: none)."""
    return tuple(map(date.fromisoformat, value)) if value else ()


def job_from_row(row: Mapping[Any, Any]) -> Job:
    return trusted_model(
        Job,
        {
            "id": row["id"],
            "key": row["job_key"],
            "func": row["func"],
            "trigger": _trigger(row["id"], row["version"], row["trigger"]),
            "names": dict(row["names"]),
            "description": row["description"],
            "kwargs": dict(row["kwargs"]),
            "max_instances": row["max_instances"],
            "overlap_policy": _OVERLAP[row["overlap_policy"]],
            "concurrency_key": row["concurrency_key"],
            "misfire_grace_time": _float(row["misfire_grace_time"]),
            "coalesce": bool(row["coalesce"]),
            "max_retries": row["max_retries"],
            "retry_backoff": _backoff(
                float(row["retry_backoff_base"]),
                float(row["retry_backoff_max"]),
                float(row["retry_jitter"]),
            ),
            "timeout": _float(row["timeout"]),
            "queue": row["queue"],
            "retention": _float(row["retention"]),
            "dispatch": row["dispatch"],
            "alert_late_after": _float(row["alert_late_after"]),
            "alert_failures": row["alert_failures"],
            "alert_max_runtime": _float(row["alert_max_runtime"]),
            "alert_no_success_within": _float(row["alert_no_success_within"]),
            "exclude_dates": _dates(row["exclude_dates"]),
            "state": _STATE[row["state"]],
            "source": _SOURCE[row["source"]],
            "fingerprint": row["fingerprint"],
            "next_run_at": row["next_run_at"],
            "last_run_at": row["last_run_at"],
            "version": row["version"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "paused_by": row["paused_by"],
            "paused_reason": row["paused_reason"],
            "paused_at": row["paused_at"],
            "paused_until": row["paused_until"],
        },
    )


_EXECUTION_FIELDS = tuple(Execution.model_fields)


def execution_values(execution: Execution) -> dict[str, Any]:
    """Column values for an execution row (columns are named like the model's fields)."""
    values = {name: getattr(execution, name) for name in _EXECUTION_FIELDS}
    values["trigger"] = execution.trigger.value
    values["status"] = execution.status.value
    return values


def execution_from_row(row: Mapping[Any, Any]) -> Execution:
    data = {name: row[name] for name in _EXECUTION_FIELDS}
    data["trigger"] = _EXECUTION_TRIGGER[data["trigger"]]
    data["status"] = _STATUS[data["status"]]
    data["queued"] = bool(data["queued"])
    return trusted_model(Execution, data)


def insert_untaken(conn: Connection, table: sa.Table, news: Sequence[NewExecution]) -> None:
    """Insert new executions (retries) in one statement; if one's id or slot is already
    stored, insert the others one by one and leave that one out (the stored row
    already covers its slot)."""
    values = [execution_values(execution_from_new(new)) for new in news]
    if not values:
        return
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(table), values)
    except sa.exc.IntegrityError:
        for value in values:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(table), [value])
            except sa.exc.IntegrityError:
                continue
