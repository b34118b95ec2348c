"""Contract: handing a claimed execution to the process that runs it (``take_over``),
putting it back (``release``), finding an owner's executions, and forked handles."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from taskmgr.core.models import ExecutionStatus, InstanceStatus
from taskmgr.storage.base import ExecutionFilter, Storage

from .helpers import T0, add_job, instance, outcome, running

LATER = T0 + timedelta(seconds=5)


def test_take_over_moves_a_running_execution_to_its_new_owner(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    claimed = storage.take_over(
        new.id,
        from_owner="scheduler",
        to_owner="worker",
        attempt=1,
        now=LATER,
        celery_task_id="task-1",
    )
    assert claimed is not None
    assert claimed.job.id == job.id
    assert (claimed.execution.owner, claimed.execution.started_at) == ("worker", LATER)
    stored = storage.get_execution(new.id)
    assert stored.status is ExecutionStatus.RUNNING
    assert (stored.owner, stored.started_at, stored.celery_task_id) == ("worker", LATER, "task-1")
    # the fence moved with it: only the new owner's outcome applies
    assert storage.record_outcomes([outcome(new, "scheduler")]) == [False]
    assert storage.record_outcomes([outcome(new, "worker")]) == [True]


def test_take_over_happens_once(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    first = storage.take_over(new.id, from_owner="scheduler", to_owner="w1", attempt=1, now=LATER)
    again = storage.take_over(new.id, from_owner="scheduler", to_owner="w2", attempt=1, now=LATER)
    assert first is not None and again is None
    assert storage.get_execution(new.id).owner == "w1"


@pytest.mark.parametrize(
    ("from_owner", "attempt"), [("someone-else", 1), ("scheduler", 2)], ids=["owner", "attempt"]
)
def test_take_over_is_fenced_by_owner_and_attempt(
    storage: Storage, from_owner: str, attempt: int
) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    taken = storage.take_over(
        new.id, from_owner=from_owner, to_owner="worker", attempt=attempt, now=LATER
    )
    assert taken is None
    assert storage.get_execution(new.id).owner == "scheduler"


def test_take_over_of_a_finished_or_unknown_execution_changes_nothing(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    assert storage.record_outcomes([outcome(new, "scheduler")]) == [True]
    before = storage.get_execution(new.id)
    assert (
        storage.take_over(new.id, from_owner="scheduler", to_owner="w", attempt=1, now=LATER)
        is None
    )
    assert storage.get_execution(new.id) == before
    assert (
        storage.take_over("nope", from_owner="scheduler", to_owner="w", attempt=1, now=LATER)
        is None
    )


def test_a_worker_that_is_not_running_takes_nothing_over(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    storage.register_instance(instance("worker"))
    storage.set_instance_status("worker", InstanceStatus.DEAD)
    assert (
        storage.take_over(new.id, from_owner="scheduler", to_owner="worker", attempt=1, now=LATER)
        is None
    )
    storage.register_instance(instance("worker"))  # registered again: it may
    assert storage.take_over(
        new.id, from_owner="scheduler", to_owner="worker", attempt=1, now=LATER
    )


def test_take_over_cancels_an_execution_whose_job_was_deleted(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    storage.delete_job("work", now=T0)
    assert (
        storage.take_over(new.id, from_owner="scheduler", to_owner="w", attempt=1, now=LATER)
        is None
    )
    stored = storage.get_execution(new.id)
    assert stored.status is ExecutionStatus.CANCELLED
    assert stored.completed_at == LATER


def test_release_puts_a_running_execution_back_to_pending(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    assert storage.release(new.id, owner="other", due_at=LATER) is False
    assert storage.release(new.id, owner="scheduler", due_at=LATER) is True
    stored = storage.get_execution(new.id)
    assert stored.status is ExecutionStatus.PENDING
    assert (stored.owner, stored.dispatched_at, stored.started_at) == (None, None, None)
    assert stored.due_at == LATER
    assert storage.next_due_at() == min(LATER, job.next_run_at or LATER)
    # released work is no longer the old owner's, nor can it be taken over
    assert (
        storage.take_over(new.id, from_owner="scheduler", to_owner="w", attempt=1, now=LATER)
        is None
    )
    assert storage.release(new.id, owner="scheduler", due_at=LATER) is False


def test_release_of_taken_over_work_changes_nothing(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    assert storage.take_over(new.id, from_owner="scheduler", to_owner="w", attempt=1, now=LATER)
    assert storage.release(new.id, owner="scheduler", due_at=LATER) is False
    assert storage.get_execution(new.id).owner == "w"


def test_list_executions_filters_by_owner(storage: Storage) -> None:
    job = add_job(storage, "work")
    mine = storage.add_execution(running(job, "me", scheduled_for=T0))
    storage.add_execution(running(job, "other", scheduled_for=T0 + timedelta(minutes=1)))
    found = storage.list_executions(ExecutionFilter(owner="me"), limit=10)
    assert [e.id for e in found] == [mine.id]
    running_mine = ExecutionFilter(owner="me", statuses=(ExecutionStatus.RUNNING,))
    assert [e.id for e in storage.list_executions(running_mine, limit=10)] == [mine.id]


def test_after_fork_keeps_the_data_usable(storage: Storage, backend: str) -> None:
    if backend != "memory":
        pytest.skip("SQL handles drop the parent's connections: see the real fork below")
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    storage.after_fork()  # as a forked child would (here: the same process)
    assert storage.get_execution(new.id).owner == "scheduler"
    assert storage.record_outcomes([outcome(new, "scheduler")]) == [True]


def test_a_forked_child_uses_the_storage_it_inherited(storage: Storage, backend: str) -> None:
    if backend == "memory":
        pytest.skip("a child's copy of memory storage is its own")
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    storage.get_execution(new.id)  # the parent has a pooled connection now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            storage.after_fork()
            code = 0 if storage.record_outcomes([outcome(new, "scheduler")]) == [True] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.get_execution(new.id).status is ExecutionStatus.SUCCESS  # parent still works
