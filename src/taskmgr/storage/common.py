"""Row-shaping helpers shared by the storage backends.

They turn the contract's inputs (a :class:`JobDefinition`, a change set, a
:class:`NewExecution`) into the stored models, so every backend interprets them the
same way. No I/O and no business rules here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    InstanceStatus,
    Job,
    JobDefinition,
    JobSource,
    JobState,
    RetryBackoff,
)
from taskmgr.core.triggers import parse_trigger
from taskmgr.exceptions import ConflictError, InvalidInputError, VersionConflictError
from taskmgr.storage.base import UPDATABLE_JOB_FIELDS, NewExecution
from taskmgr.storage.inputs import build

#: Statuses an execution never leaves.
FINAL_STATUSES = tuple(status for status in ExecutionStatus if status.is_final)

#: Why ``take_over`` cancels a running execution whose job is gone.
JOB_DELETED_BEFORE_START = "the job was deleted before a worker started it"

#: The fields of a job's pause: set while it is paused, None otherwise.
PAUSE_FIELDS = ("paused_by", "paused_reason", "paused_at", "paused_until")

#: The job fields a :class:`JobDefinition` validates (its ``enabled`` is a state).
_DEFINED = tuple(name for name in JobDefinition.model_fields if name != "enabled")


def job_from_definition(
    definition: JobDefinition,
    *,
    job_id: int,
    source: JobSource,
    state: JobState,
    next_run_at: datetime | None,
    fingerprint: str | None,
    now: datetime,
) -> Job:
    """The job ``add_job`` stores (``version`` 1), validated.

    :raises InvalidInputError: ``definition`` is not a :class:`JobDefinition`, or a
        state, source or datetime is invalid (naive datetimes are refused).
    """
    if not isinstance(definition, JobDefinition):
        raise InvalidInputError(
            f"must be a JobDefinition, got {type(definition).__name__}", field="definition"
        )
    return build(
        Job,
        {
            "id": job_id,
            "key": definition.key,
            "func": definition.func,
            "trigger": definition.trigger,
            "names": dict(definition.names),
            "description": definition.description,
            # Deep copies: stored models must not share mutable containers with callers.
            "kwargs": copy.deepcopy(definition.kwargs),
            "max_instances": definition.max_instances,
            "overlap_policy": definition.overlap_policy,
            "concurrency_key": definition.concurrency_key,
            "misfire_grace_time": definition.misfire_grace_time,
            "coalesce": definition.coalesce,
            "max_retries": definition.max_retries,
            "retry_backoff": definition.retry_backoff,
            "timeout": definition.timeout,
            "queue": definition.queue,
            "retention": definition.retention,
            "dispatch": definition.dispatch,
            "alert_late_after": definition.alert_late_after,
            "alert_failures": definition.alert_failures,
            "alert_max_runtime": definition.alert_max_runtime,
            "alert_no_success_within": definition.alert_no_success_within,
            "exclude_dates": definition.exclude_dates,
            "state": state,
            "source": source,
            "fingerprint": fingerprint,
            "next_run_at": next_run_at,
            "last_run_at": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        },
    )


def apply_job_changes(job: Job, changes: Mapping[str, Any], *, now: datetime) -> Job:
    """``job`` with ``changes`` applied, ``version`` incremented and ``updated_at = now``.

    Values are checked as a :class:`JobDefinition` checks them (key, function, trigger,
    options and their ranges, kwargs that are plain JSON) and type-checked by the
    :class:`Job` model (a spec object or its JSON for ``trigger``, a
    :class:`RetryBackoff` or its dict for ``retry_backoff``, enums or their values,
    aware datetimes), so a bad change is refused before anything is written. A job
    left in any state but paused loses its ``paused_*`` fields.
    """
    unknown = sorted(set(changes) - UPDATABLE_JOB_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"cannot update job field(s) {', '.join(map(repr, unknown))}; "
            f"updatable: {', '.join(sorted(UPDATABLE_JOB_FIELDS))}",
            field=unknown[0],
        )
    data: dict[str, Any] = {name: getattr(job, name) for name in Job.model_fields}
    for name, value in changes.items():
        if name == "trigger" and isinstance(value, Mapping):
            value = parse_trigger(dict(value))
        elif name == "retry_backoff" and isinstance(value, Mapping):
            value = RetryBackoff(**value)
        elif name in ("kwargs", "names"):
            value = copy.deepcopy(value)
        data[name] = value
    if not changes.keys().isdisjoint(_DEFINED):
        definition = JobDefinition(**{name: data[name] for name in _DEFINED})
        data.update((name, getattr(definition, name)) for name in _DEFINED)
    if data["state"] not in (JobState.PAUSED, JobState.PAUSED.value):
        # who paused a job, why and until when are told only while it is paused
        data.update(dict.fromkeys(PAUSE_FIELDS))
    data["version"] = job.version + 1
    data["updated_at"] = now
    return build(Job, data)


def execution_from_new(new: NewExecution, **overrides: Any) -> Execution:
    """The stored form of a :class:`NewExecution` (before any later update)."""
    data: dict[str, Any] = {
        "id": new.id,
        "job_id": new.job_id,
        "job_key": new.job_key,
        "scheduled_for": new.scheduled_for,
        "attempt": new.attempt,
        "chain_id": new.chain_id or new.id,
        "trigger": new.trigger,
        "status": new.status,
        "due_at": new.due_at,
        "queued": new.queued,
        "kwargs": copy.deepcopy(dict(new.kwargs)),
        "concurrency_value": new.concurrency_value,
        "owner": new.owner,
        "actor": new.actor,
        "created_at": new.created_at,
        "dispatched_at": new.dispatched_at,
        "completed_at": new.completed_at,
        "error_message": new.error_message,
        "idempotency_key": new.idempotency_key,
        "trace_context": dict(new.trace_context) if new.trace_context else None,
    }
    data.update(overrides)
    return build(Execution, data)


def execution_conflict(execution: Execution) -> ConflictError:
    """What ``add_execution`` raises when a unique key of ``execution`` is taken (one
    message for every backend: the SQL one cannot tell which key it was)."""
    return ConflictError(
        f"execution {execution.id!r} of job {execution.job_key!r} for "
        f"{execution.scheduled_for.isoformat()} attempt {execution.attempt} conflicts with "
        "a stored one: an execution with this id, this scheduled slot, this attempt of "
        "its chain or this idempotency key already exists"
    )


def check_deferrals(executions: Sequence[Execution]) -> None:
    """Refuse a batch of deferred runs in which two share a job and an idempotency key
    (the caller asked for two different runs under one key)."""
    keys = [(e.job_id, e.idempotency_key) for e in executions if e.idempotency_key is not None]
    if len(set(keys)) != len(keys):
        raise ConflictError("two deferred runs of one batch share a job and an idempotency key")


def check_job_versions(
    version_of: Callable[[int], int | None], expected: Mapping[int, int] | None
) -> None:
    """What ``defer_executions`` checks before writing: each job of ``expected`` is
    still at that version (``version_of``: a stored job's version by id, None if gone).

    :raises VersionConflictError: one of them changed since the caller read it.
    """
    for job_id, version in (expected or {}).items():
        if version_of(job_id) != version:
            raise VersionConflictError(
                f"job {job_id} changed since it was read (version {version})"
            )


def not_pending(execution: Execution) -> ConflictError:
    """What ``cancel_pending`` raises for an execution that already started or ended."""
    return ConflictError(
        f"execution {execution.id!r} is {execution.status.value}: only a pending one can "
        "be cancelled"
    )


def for_owner(new: NewExecution, owner: str, now: datetime) -> dict[str, Any]:
    """Overrides for an execution inserted by ``claim``: running rows belong to ``owner``."""
    if new.status is not ExecutionStatus.RUNNING:
        return {}
    return {"owner": owner, "dispatched_at": new.dispatched_at or now}


def lost_message(owner: str | None, status: InstanceStatus | str) -> str:
    """Why ``reap`` marked an execution ``lost`` (kept on the row so the loss is explained)."""
    return f"its owner instance {owner!r} is {InstanceStatus(status).value}"
