"""Contract: the failed attempts of the history, grouped by job, status and error type."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from taskmgr.core.failures import FailureGroup
from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger, Job
from taskmgr.exceptions import InvalidDatetimeError, InvalidInputError
from taskmgr.storage.base import FailureFilter, Storage

from .helpers import MINUTE, T0, add_job, new_execution, outcome, running

OWNER = "instance-a"
SECOND = timedelta(seconds=1)
FAILED, TIMEOUT, LOST = ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT, ExecutionStatus.LOST
CONNECTION = "builtins.ConnectionError"


def _attempt(
    storage: Storage,
    job: Job,
    status: ExecutionStatus,
    at: datetime,
    *,
    error_type: str | None = None,
    message: str | None = None,
    retry_of: Execution | None = None,
    execution_id: str | None = None,
) -> Execution:
    """One attempt that ran and ended with ``status`` at ``at``; with ``retry_of``, the
    next attempt of that one's run."""
    fields: dict[str, object] = {}
    if retry_of is not None:
        fields = {
            "chain_id": retry_of.chain_id,
            "attempt": retry_of.attempt + 1,
            "trigger": ExecutionTrigger.RETRY,
        }
    run = storage.add_execution(
        running(job, OWNER, id=execution_id, created_at=at - SECOND, **fields)
    )
    done = outcome(
        run, OWNER, status=status, completed_at=at, error_type=error_type, error_message=message
    )
    assert storage.record_outcomes([done]) == [True]
    return storage.get_execution(run.id)


def _history(storage: Storage) -> dict[str, Execution]:
    """Two jobs' failures, among runs that did not fail."""
    alpha, zeta = add_job(storage, "alpha"), add_job(storage, "Zeta")
    made: dict[str, Execution] = {}
    # alpha: a run that failed twice, then succeeded on its third attempt
    first = _attempt(storage, alpha, FAILED, T0 + SECOND, error_type=CONNECTION, message="a1")
    second = _attempt(
        storage, alpha, FAILED, T0 + 2 * SECOND, error_type=CONNECTION, message="a2", retry_of=first
    )
    made["third"] = _attempt(
        storage, alpha, ExecutionStatus.SUCCESS, T0 + 3 * SECOND, retry_of=second
    )
    # another run of alpha failing the same way, later: the group's latest message
    made["b1"] = _attempt(
        storage, alpha, FAILED, T0 + 5 * SECOND, error_type=CONNECTION, message="b1"
    )
    made["slow"] = _attempt(
        storage, alpha, TIMEOUT, T0 + 10 * SECOND, error_type="TimeoutError", message="too slow"
    )
    # Zeta: two groups last seen at the same instant (the greater last id first), one
    # of them without an error type
    made["lost"] = _attempt(
        storage, zeta, LOST, T0 + 4 * SECOND, message="owner died", execution_id="zz-lost"
    )
    made["value"] = _attempt(
        storage,
        zeta,
        FAILED,
        T0 + 4 * SECOND,
        error_type="builtins.ValueError",
        message="bad value",
        execution_id="zz-value",
    )
    # not failures: waiting, running, missed, cancelled
    storage.add_execution(new_execution(alpha, due_at=T0 + MINUTE))
    storage.add_execution(running(zeta, OWNER))
    storage.add_execution(new_execution(alpha, status=ExecutionStatus.MISSED, completed_at=T0))
    return made


def test_failures_grouped_by_job_status_and_error_type(storage: Storage) -> None:
    made = _history(storage)

    groups = storage.failure_groups(FailureFilter(), limit=100)

    assert groups == [
        FailureGroup(
            job_key="alpha",
            status=TIMEOUT,
            error_type="TimeoutError",
            count=1,
            runs=1,
            first_seen=T0 + 10 * SECOND,
            last_seen=T0 + 10 * SECOND,
            last_execution_id=made["slow"].id,
            last_message="too slow",
        ),
        FailureGroup(
            job_key="alpha",
            status=FAILED,
            error_type=CONNECTION,
            count=3,
            runs=2,  # the first run's two attempts are one run
            first_seen=T0 + SECOND,
            last_seen=T0 + 5 * SECOND,
            last_execution_id=made["b1"].id,
            last_message="b1",
        ),
        FailureGroup(
            job_key="Zeta",
            status=FAILED,
            error_type="builtins.ValueError",
            count=1,
            runs=1,
            first_seen=T0 + 4 * SECOND,
            last_seen=T0 + 4 * SECOND,
            last_execution_id="zz-value",
            last_message="bad value",
        ),
        FailureGroup(
            job_key="Zeta",
            status=LOST,
            error_type=None,
            count=1,
            runs=1,
            first_seen=T0 + 4 * SECOND,
            last_seen=T0 + 4 * SECOND,
            last_execution_id="zz-lost",
            last_message="owner died",
        ),
    ]
    assert [g.job_key for g in storage.failure_groups(FailureFilter(), limit=2)] == [
        "alpha",
        "alpha",
    ]
    assert storage.failure_groups(FailureFilter(), limit=0) == []


def test_failure_filters(storage: Storage) -> None:
    _history(storage)

    def found(limit: int = 100, **filters: object) -> list[tuple[str, str, int]]:
        groups = storage.failure_groups(FailureFilter(**filters), limit=limit)  # type: ignore[arg-type]
        return [(g.job_key, g.status.value, g.count) for g in groups]

    assert found(job_key="Zeta") == [("Zeta", "failed", 1), ("Zeta", "lost", 1)]
    assert found(job_key="nobody") == []
    assert found(statuses=[LOST, TIMEOUT]) == [("alpha", "timeout", 1), ("Zeta", "lost", 1)]
    assert found(statuses=["lost"]) == [("Zeta", "lost", 1)]  # values are the members
    assert found(statuses=[]) == []
    # since/until bound completed_at, inclusive: a group counts only what is inside
    assert found(since=T0 + 2 * SECOND, until=T0 + 5 * SECOND) == [
        ("alpha", "failed", 2),
        ("Zeta", "failed", 1),
        ("Zeta", "lost", 1),
    ]
    [inside] = storage.failure_groups(
        FailureFilter(job_key="alpha", statuses=[FAILED], until=T0 + 2 * SECOND), limit=5
    )
    assert (inside.count, inside.runs, inside.last_message) == (2, 1, "a2")
    assert found(since=T0 + 11 * SECOND) == []


def test_the_latest_attempt_of_a_group_breaks_ties_by_id(storage: Storage) -> None:
    job = add_job(storage, "ties")
    for execution_id, message in (("exec-b", "second"), ("exec-a", "first"), ("exec-c", "third")):
        _attempt(
            storage,
            job,
            FAILED,
            T0,
            error_type=CONNECTION,
            message=message,
            execution_id=execution_id,
        )
    [group] = storage.failure_groups(FailureFilter(), limit=5)
    assert (group.count, group.runs, group.last_execution_id, group.last_message) == (
        3,
        3,
        "exec-c",
        "third",
    )


def test_bad_failure_filters_are_invalid_input(storage: Storage) -> None:
    bad = [
        FailureFilter(statuses=[ExecutionStatus.SUCCESS]),
        FailureFilter(statuses=["bogus"]),  # type: ignore[list-item]
        FailureFilter(job_key=42),  # type: ignore[arg-type]
    ]
    for filters in bad:
        with pytest.raises(InvalidInputError):
            storage.failure_groups(filters, limit=5)
    with pytest.raises(InvalidInputError):
        storage.failure_groups(FailureFilter(), limit=-1)
    with pytest.raises(InvalidDatetimeError):
        storage.failure_groups(FailureFilter(since=T0.replace(tzinfo=None)), limit=5)
    with pytest.raises(InvalidDatetimeError):
        storage.failure_groups(FailureFilter(until=T0.replace(year=9999)), limit=5)
