"""Checks of what callers hand to a storage backend, shared by every backend.

Each check raises the :class:`~taskmgr.exceptions.InvalidInputError` subclass naming
the field, and runs before anything is written (and before anything is read, except
for a planner's plan, which is made from what a claim read), so the memory and SQL
backends refuse the same inputs with the same error. Datetimes are normalised to UTC
(the form the SQL backend reads back), so both hand out equal values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from taskmgr.core.failures import FAILURE_STATUSES
from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, Instance
from taskmgr.core.triggers import MAX_DATETIME, MIN_DATETIME
from taskmgr.core.validation import ensure_aware, reraise_validation
from taskmgr.exceptions import InvalidDatetimeError, InvalidInputError
from taskmgr.storage.base import (
    ClaimPlan,
    ExecutionFilter,
    FailureFilter,
    JobAdvance,
    NewExecution,
    Outcome,
    PendingDecision,
)

__all__ = [
    "build",
    "checked_cursor",
    "checked_failure_filter",
    "checked_filter",
    "checked_instance",
    "checked_job_id",
    "checked_limit",
    "checked_outcome",
    "checked_plan",
    "checked_stored_range",
    "checked_task_id_changes",
    "checked_task_ids",
    "checked_text",
    "fold_ascii",
    "member",
    "members",
    "utc",
    "validated",
]

EnumT = TypeVar("EnumT", bound=Enum)
ModelT = TypeVar("ModelT", bound=BaseModel)


def utc(value: object, field: str) -> datetime:
    """``value`` as an aware UTC datetime; a naive one (or no datetime) is refused."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value  # the common case, kept cheap: claims and outcomes pass here
    moment = ensure_aware(value, field)
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +01:00 is before year 1 in UTC
        raise InvalidDatetimeError(
            f"{moment.isoformat()} is out of range in UTC", field=field
        ) from None


def _utc_or_none(value: object, field: str) -> datetime | None:
    return None if value is None else utc(value, field)


def _stored_range(value: datetime | None, field: str) -> datetime | None:
    """``value`` (UTC) if it is an instant the database stores (1970-9998), else raise."""
    if value is not None and not MIN_DATETIME <= value < MAX_DATETIME:
        raise InvalidDatetimeError(
            f"{value.isoformat()} out of range: the year must be 1970-9998 (UTC)", field=field
        )
    return value


def checked_stored_range(value: datetime | None, field: str) -> datetime | None:
    """``value`` (UTC) if it is an instant the database stores (1970-9998), else raise
    :class:`~taskmgr.exceptions.InvalidDatetimeError` naming ``field``."""
    return _stored_range(value, field)


#: Longest text a job search takes.
MAX_SEARCH_TEXT = 200
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_ascii(text: str) -> str:
    """``text`` with ASCII letters in lower case (others kept): how a job search
    compares, the same on every backend whatever the database's locale."""
    return text.translate(_ASCII_LOWER)


def checked_text(text: object, field: str = "text") -> str | None:
    """A search text: None, or a string of at most 200 characters without NUL."""
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > MAX_SEARCH_TEXT or "\x00" in text:
        raise InvalidInputError(
            f"must be a string of at most {MAX_SEARCH_TEXT} characters without NUL",
            field=field,
        )
    return text


#: An execution id as a cursor names it: printable ASCII (ids are UUID strings).
_EXECUTION_ID = re.compile(r"[\x21-\x7e]{1,64}", re.ASCII)


def member(enum: type[EnumT], value: object, field: str) -> EnumT:
    """``value`` as a member of ``enum`` (a member or its value)."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise InvalidInputError(f"must be one of {allowed}, got {value!r}", field=field) from None


def members(enum: type[EnumT], values: Iterable[object], field: str) -> tuple[EnumT, ...]:
    return tuple(member(enum, value, field) for value in values)


def checked_limit(value: object, field: str = "limit") -> int:
    """A row limit: an integer of at least 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"must be an integer >= 0, got {value!r}", field=field)
    return value


def checked_lookahead(value: object) -> float:
    """A claim's look-ahead: a finite number of seconds, at least 0, at most 60."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= 60  # also refuses NaN
    ):
        raise InvalidInputError(
            f"must be a number of seconds from 0 to 60, got {value!r}", field="lookahead"
        )
    return float(value)


def checked_job_id(value: object, field: str = "job_id") -> int | None:
    """A job id (a positive integer), or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInputError(f"must be a job id (an integer >= 1), got {value!r}", field=field)
    return value


def validated(model: ModelT, changes: Mapping[str, Any] | None = None) -> ModelT:
    """``model`` with ``changes``, validated as a new model (``model_copy(update=...)``
    validates nothing) and with its datetimes in UTC (naive ones are refused)."""
    data = dict(model.__dict__)
    if changes:
        data.update(changes)
    return build(type(model), data)


def build(cls: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    """``cls`` validated from ``data``, its datetimes in UTC (naive ones are refused)."""
    try:
        model = cls.model_validate(data)
    except ValidationError as exc:
        reraise_validation(exc)
    fixes = {
        name: utc(value, name)
        for name, value in model.__dict__.items()
        if isinstance(value, datetime) and value.tzinfo is not UTC
    }
    return model.model_copy(update=fixes) if fixes else model


def checked_instance(instance: Instance) -> Instance:
    """An instance row as given, validated again (it may have been built unvalidated)."""
    if not isinstance(instance, Instance):
        raise InvalidInputError(
            f"must be an Instance, got {type(instance).__name__}", field="instance"
        )
    return validated(instance)


def checked_outcome(outcome: Outcome) -> Outcome:
    """An outcome with a final status and aware datetimes (its ``retry`` is checked
    when it is inserted)."""
    status = outcome.status
    if type(status) is not ExecutionStatus:
        status = member(ExecutionStatus, status, "status")
    if not status.is_final:
        raise InvalidInputError(
            f"an outcome ends a run: must be a final status, got {status.value!r}", field="status"
        )
    started_at = _utc_or_none(outcome.started_at, "started_at")
    completed_at = utc(outcome.completed_at, "completed_at")
    if (
        status is outcome.status
        and started_at is outcome.started_at
        and completed_at is outcome.completed_at
    ):
        return outcome  # the common case: nothing to replace
    return dataclasses.replace(
        outcome, status=status, started_at=started_at, completed_at=completed_at
    )


def checked_filter(filters: ExecutionFilter) -> ExecutionFilter:
    """A history filter with statuses and triggers as members and its bounds in UTC."""
    chain_id = filters.chain_id
    if chain_id is not None and (
        not isinstance(chain_id, str) or _EXECUTION_ID.fullmatch(chain_id) is None
    ):
        raise InvalidInputError(
            f"must be an execution id (1-64 printable ASCII characters), got {chain_id!r:.80}",
            field="chain_id",
        )
    return ExecutionFilter(
        job_key=filters.job_key,
        statuses=members(ExecutionStatus, filters.statuses, "statuses"),
        triggers=members(ExecutionTrigger, filters.triggers, "triggers"),
        since=_stored_range(_utc_or_none(filters.since, "since"), "since"),
        until=_stored_range(_utc_or_none(filters.until, "until"), "until"),
        owner=filters.owner,
        chain_id=chain_id,
    )


def checked_failure_filter(filters: FailureFilter) -> FailureFilter:
    """A failure filter with statuses as members (failure statuses only) and its
    bounds in UTC."""
    statuses = members(ExecutionStatus, filters.statuses, "statuses")
    for status in statuses:
        if status not in FAILURE_STATUSES:
            allowed = ", ".join(s.value for s in FAILURE_STATUSES)
            raise InvalidInputError(
                f"must be failure statuses ({allowed}), got {status.value!r}", field="statuses"
            )
    if filters.job_key is not None and not isinstance(filters.job_key, str):
        raise InvalidInputError("must be a job key", field="job_key")
    return FailureFilter(
        job_key=filters.job_key,
        statuses=tuple(dict.fromkeys(statuses)),
        since=_stored_range(_utc_or_none(filters.since, "since"), "since"),
        until=_stored_range(_utc_or_none(filters.until, "until"), "until"),
    )


def checked_cursor(before: tuple[datetime, str] | None) -> tuple[datetime, str] | None:
    """A keyset position ``(created_at, id)``: an instant the database stores
    (1970-9998, UTC) and an id of 1-64 printable ASCII characters."""
    if before is None:
        return None
    created_at, execution_id = before
    if not isinstance(execution_id, str):
        raise InvalidInputError(
            f"must be an execution id, got {type(execution_id).__name__}", field="before"
        )
    if _EXECUTION_ID.fullmatch(execution_id) is None:
        raise InvalidInputError(
            f"must be an execution id (1-64 printable ASCII characters), got {execution_id!r:.80}",
            field="before",
        )
    moment = utc(created_at, "before")
    _stored_range(moment, "before")
    return moment, execution_id


# -- a planner's plan ----------------------------------------------------------------

_NEW_TIMES = ("scheduled_for", "due_at", "created_at")
_NEW_OPTIONAL_TIMES = ("dispatched_at", "completed_at")


def checked_plan(plan: ClaimPlan) -> ClaimPlan:
    """A planner's plan, checked whole before any of it is applied (so whether it is
    refused does not depend on which compare-and-sets win): enums as members,
    datetimes in UTC, and decisions that move a pending execution on (to ``running``
    or a final status). The rest of each row is checked when it is stored."""
    advances = [_checked_advance(advance) for advance in plan.advances]
    pending = [_checked_decision(decision) for decision in plan.pending]
    return ClaimPlan(advances=advances, pending=pending, orphan_job_ids=plan.orphan_job_ids)


def _checked_advance(advance: JobAdvance) -> JobAdvance:
    expected = utc(advance.expected_next_run_at, "expected_next_run_at")
    following = _utc_or_none(advance.next_run_at, "next_run_at")
    last = _utc_or_none(advance.last_run_at, "last_run_at")
    rows = [_checked_new(new) for new in advance.executions]
    if (
        expected is advance.expected_next_run_at
        and following is advance.next_run_at
        and last is advance.last_run_at
        and all(row is new for row, new in zip(rows, advance.executions, strict=True))
    ):
        return advance  # the common case: nothing to replace
    return dataclasses.replace(
        advance,
        expected_next_run_at=expected,
        next_run_at=following,
        last_run_at=last,
        executions=rows,
    )


def _checked_new(new: NewExecution) -> NewExecution:
    changes: dict[str, Any] = {}
    if type(new.trigger) is not ExecutionTrigger:
        changes["trigger"] = member(ExecutionTrigger, new.trigger, "trigger")
    if type(new.status) is not ExecutionStatus:
        changes["status"] = member(ExecutionStatus, new.status, "status")
    for name in _NEW_TIMES + _NEW_OPTIONAL_TIMES:
        value = getattr(new, name)
        moment = utc(value, name) if name in _NEW_TIMES else _utc_or_none(value, name)
        if moment is not value:
            changes[name] = moment
    return dataclasses.replace(new, **changes) if changes else new


def _checked_decision(decision: PendingDecision) -> PendingDecision:
    status = decision.status
    if type(status) is not ExecutionStatus:
        status = member(ExecutionStatus, status, "status")
    if status is ExecutionStatus.PENDING:
        raise InvalidInputError(
            "a decision moves a pending execution on: must be running or a final status, "
            "got 'pending'",
            field="status",
        )
    return decision if status is decision.status else dataclasses.replace(decision, status=status)


def checked_task_ids(task_ids: Mapping[str, str]) -> dict[str, str]:
    """Execution id to the task id of the message published for it: each a string of
    1-255 characters (what the ``celery_task_id`` column holds)."""
    checked: dict[str, str] = {}
    for execution_id, task_id in task_ids.items():
        if not isinstance(execution_id, str):
            raise InvalidInputError(
                f"an execution id must be a string, got {type(execution_id).__name__}",
                field="execution_id",
            )
        if not isinstance(task_id, str) or not 0 < len(task_id) <= 255:
            raise InvalidInputError(
                f"a task id must be a string of 1-255 characters, got {task_id!r:.80}",
                field="celery_task_id",
            )
        checked[execution_id] = task_id
    return checked


def checked_task_id_changes(task_ids: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Execution id to the ``(old, new)`` task ids of a message published again for
    it: each a string of 1-255 characters."""
    checked: dict[str, tuple[str, str]] = {}
    for execution_id, change in task_ids.items():
        if not isinstance(change, tuple) or len(change) != 2:
            raise InvalidInputError(
                f"a task id change must be an (old, new) pair, got {change!r:.80}",
                field="celery_task_id",
            )
        old, new = change
        checked[execution_id] = (
            checked_task_ids({execution_id: old})[execution_id],
            checked_task_ids({execution_id: new})[execution_id],
        )
    return checked
