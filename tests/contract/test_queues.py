"""Contract: the queue of each job (pending and running executions) at one instant."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, JobQueue
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.base import Storage

from .helpers import MINUTE, T0, add_job, new_execution, outcome, running

OWNER = "instance-a"
MICRO = timedelta(microseconds=1)


def test_nothing_queued(storage: Storage) -> None:
    assert storage.job_queues(now=T0) == []
    job = add_job(storage, "idle")
    storage.add_execution(
        new_execution(job, status=ExecutionStatus.SUCCESS, completed_at=T0 - MINUTE)
    )
    assert storage.job_queues(now=T0) == []  # the finished history is not a queue


def test_counts_pending_due_and_running_per_job(storage: Storage) -> None:
    # "Zeta" sorts before "alpha" by code point, after it in most collations.
    alpha, zeta = add_job(storage, "alpha"), add_job(storage, "Zeta")
    deferred = ExecutionTrigger.DEFERRED
    for due_at in (T0 - MINUTE, T0, T0 + MICRO, T0 + MINUTE):  # two due, two not yet
        storage.add_execution(new_execution(alpha, trigger=deferred, due_at=due_at))
    storage.add_execution(new_execution(alpha, due_at=T0 - 2 * MINUTE, queued=True))
    storage.add_execution(running(alpha, OWNER))
    storage.add_execution(running(alpha, OWNER))
    storage.add_execution(new_execution(alpha, status=ExecutionStatus.FAILED, completed_at=T0))
    storage.add_execution(
        new_execution(zeta, trigger=ExecutionTrigger.RETRY, attempt=2, due_at=T0 + MINUTE)
    )

    assert storage.job_queues(now=T0) == [
        JobQueue(job_id=zeta.id, job_key="Zeta", pending=1, due=0, running=0),
        JobQueue(
            job_id=alpha.id,
            job_key="alpha",
            pending=5,
            due=3,  # due_at <= now, the queued one included
            running=2,
            oldest_due_at=T0 - 2 * MINUTE,
        ),
    ]
    # later, everything pending is due
    [zeta_later, alpha_later] = storage.job_queues(now=T0 + MINUTE)
    assert (zeta_later.due, zeta_later.oldest_due_at) == (1, T0 + MINUTE)
    assert (alpha_later.pending, alpha_later.due) == (5, 5)


def test_started_and_ended_executions_leave_the_queue(storage: Storage) -> None:
    job = add_job(storage, "work")
    first = storage.add_execution(new_execution(job, due_at=T0 - MINUTE))
    storage.add_execution(new_execution(job, due_at=T0))
    run = storage.add_execution(running(job, OWNER))

    storage.cancel_pending(first.id, now=T0, message="cancelled by ops")
    assert storage.record_outcomes([outcome(run, OWNER)]) == [True]

    assert storage.job_queues(now=T0) == [
        JobQueue(job_id=job.id, job_key="work", pending=1, due=1, running=0, oldest_due_at=T0)
    ]


def test_a_deleted_job_keeps_its_running_executions(storage: Storage) -> None:
    old = add_job(storage, "reused")
    storage.add_execution(running(old, OWNER))
    storage.add_execution(new_execution(old, due_at=T0))  # cancelled by the delete
    storage.delete_job("reused", now=T0)
    new = add_job(storage, "reused")
    storage.add_execution(new_execution(new, due_at=T0 + MINUTE))

    queues = storage.job_queues(now=T0)
    assert new.id != old.id
    assert sorted(queues, key=lambda q: q.job_id == new.id) == [
        JobQueue(job_id=old.id, job_key="reused", pending=0, due=0, running=1),
        JobQueue(job_id=new.id, job_key="reused", pending=1, due=0, running=0),
    ]
    assert [q.job_id for q in queues] == sorted(q.job_id for q in queues)  # equal keys: by id


@pytest.mark.parametrize("now", [T0.replace(tzinfo=None), "2026-03-01T12:00:00+00:00"])
def test_now_must_be_an_aware_datetime(storage: Storage, now: datetime) -> None:
    with pytest.raises(InvalidInputError) as info:
        storage.job_queues(now=now)
    assert info.value.field == "now"
