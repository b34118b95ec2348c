"""Contract: ``take_over_many``, the take-overs of messages that reach one worker process
together: per request, what ``take_over`` called in turn would return, and the same
fence (owner, attempt, the message's task id, a running taker)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskmgr.core.models import Execution, ExecutionStatus, InstanceStatus, Job
from taskmgr.storage.base import Storage
from taskmgr.storage.task_handover import TakeOver

from .helpers import MINUTE, T0, add_job, instance, outcome, running

LATER = T0 + timedelta(seconds=5)


def published(storage: Storage, job: Job, n: int, owner: str = "scheduler") -> Execution:
    """The ``n``-th running execution of ``job`` owned by ``owner``, with the task id
    ``task-<n>`` of its message recorded."""
    new = storage.add_execution(running(job, owner, scheduled_for=T0 + n * MINUTE))
    assert storage.assign_task_ids({new.id: f"task-{n}"}, owner=owner) == {new.id}
    return storage.get_execution(new.id)


def request(execution: Execution, **fields: object) -> TakeOver:
    values: dict[str, object] = {
        "execution_id": execution.id,
        "from_owner": "scheduler",
        "attempt": execution.attempt,
        "celery_task_id": execution.celery_task_id,
    }
    values.update(fields)
    return TakeOver(**values)  # type: ignore[arg-type]


def test_take_over_many_takes_each_execution_over_in_order(storage: Storage) -> None:
    job = add_job(storage, "work")
    executions = [published(storage, job, n) for n in range(5)]
    found = storage.take_over_many(
        [request(e) for e in reversed(executions)], to_owner="worker", now=LATER
    )
    assert [c.execution.id if c else None for c in found] == [e.id for e in reversed(executions)]
    for claimed, execution in zip(found, reversed(executions), strict=True):
        assert claimed is not None
        assert claimed.job.id == job.id and claimed.job.key == "work"
        assert claimed.execution.owner == "worker"
        assert claimed.execution.started_at == LATER
        assert claimed.execution.celery_task_id == execution.celery_task_id
        assert claimed.execution.scheduled_for == execution.scheduled_for
        stored = storage.get_execution(execution.id)
        assert stored.status is ExecutionStatus.RUNNING
        assert (stored.owner, stored.started_at) == ("worker", LATER)
        assert claimed.execution == stored
    # the fence moved with them: only the worker's outcomes apply
    assert storage.record_outcomes([outcome(executions[0], "scheduler")]) == [False]
    assert storage.record_outcomes([outcome(e, "worker") for e in executions]) == [True] * 5


def test_take_over_many_applies_the_fence_of_take_over_per_request(storage: Storage) -> None:
    job = add_job(storage, "work")
    good, forged, stale_attempt, started, foreign = (published(storage, job, n) for n in range(5))
    other = add_job(storage, "gone")
    gone = published(storage, other, 9)
    assert storage.take_over_many([request(started)], to_owner="w0", now=T0) != [None]
    storage.delete_job("gone", now=T0)
    found = storage.take_over_many(
        [
            request(good),
            request(forged, celery_task_id="another-task"),
            request(stale_attempt, attempt=2),
            request(started),  # redelivered after it started elsewhere
            request(foreign, from_owner="someone-else"),
            request(gone),
        ],
        to_owner="worker",
        now=LATER,
    )
    assert [c is not None for c in found] == [True, False, False, False, False, False]
    for untouched in (forged, stale_attempt, foreign):
        stored = storage.get_execution(untouched.id)
        assert (stored.owner, stored.started_at) == ("scheduler", None)
    assert storage.get_execution(started.id).owner == "w0"
    # a job deleted before its run started: cancelled, as take_over does
    cancelled = storage.get_execution(gone.id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.completed_at == LATER


def test_two_requests_for_one_execution_start_it_once(storage: Storage) -> None:
    job = add_job(storage, "work")
    first, second = published(storage, job, 1), published(storage, job, 2)
    found = storage.take_over_many(
        [
            request(first),
            request(first),  # the same message delivered twice
            request(second, celery_task_id="stale-task"),  # a replaced message
            request(second),
        ],
        to_owner="worker",
        now=LATER,
    )
    assert [c is not None for c in found] == [True, False, False, True]
    assert storage.take_over_many([request(first)], to_owner="w2", now=LATER) == [None]


def test_a_worker_that_is_not_running_takes_nothing_over_at_once(storage: Storage) -> None:
    job = add_job(storage, "work")
    executions = [published(storage, job, n) for n in range(3)]
    storage.register_instance(instance("worker"))
    storage.set_instance_status("worker", InstanceStatus.DEAD)
    requests = [request(e) for e in executions]
    assert storage.take_over_many(requests, to_owner="worker", now=LATER) == [None] * 3
    storage.register_instance(instance("worker"))  # registered again: it may
    assert all(storage.take_over_many(requests, to_owner="worker", now=LATER))


def test_take_over_many_of_nothing_is_nothing(storage: Storage) -> None:
    assert storage.take_over_many([], to_owner="worker", now=LATER) == []


@pytest.mark.parametrize("n", [1, 60])
def test_outcomes_without_retries_are_fenced_per_execution(storage: Storage, n: int) -> None:
    job = add_job(storage, "work")
    executions = [published(storage, job, k) for k in range(n)]
    taken = storage.take_over_many([request(e) for e in executions], to_owner="w", now=LATER)
    assert all(taken)
    stranger = storage.add_execution(running(job, "other", scheduled_for=T0 - MINUTE))
    outcomes = [outcome(e, "w") for e in executions[::2]]
    outcomes += [outcome(e, "intruder") for e in executions[1::2]]
    outcomes.append(outcome(stranger, "w"))
    applied = storage.record_outcomes(outcomes)
    assert applied == [True] * len(executions[::2]) + [False] * (
        len(outcomes) - len(executions[::2])
    )
    for execution in executions:
        stored = storage.get_execution(execution.id)
        ended = execution in executions[::2]
        assert stored.status is (ExecutionStatus.SUCCESS if ended else ExecutionStatus.RUNNING)
    assert storage.get_execution(stranger.id).status is ExecutionStatus.RUNNING


def test_odd_values_in_a_message_take_nothing_over_and_spoil_no_other(storage: Storage) -> None:
    job = add_job(storage, "work")
    good, padded = published(storage, job, 1), published(storage, job, 2)
    found = storage.take_over_many(
        [
            request(padded, execution_id=padded.id + "0000"),  # longer than any id
            request(padded, attempt=2**40),
            request(padded, celery_task_id="t" * 300),
            request(good),
        ],
        to_owner="worker",
        now=LATER,
    )
    assert [c is not None for c in found] == [False, False, False, True]
    stored = storage.get_execution(padded.id)
    assert (stored.owner, stored.started_at) == ("scheduler", None)
