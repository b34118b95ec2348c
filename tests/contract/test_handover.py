"""Contract: handing a claimed execution to the process that runs it (``take_over``),
putting it back (``release``), finding an owner's executions, and forked handles."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest

from taskmgr.core.models import Execution, ExecutionStatus, InstanceStatus, Job
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.base import Claimed, ExecutionFilter, Storage

from .helpers import MINUTE, T0, add_job, fire_all, instance, outcome, running

LATER = T0 + timedelta(seconds=5)
TASK = "task-1"


def published(storage: Storage, job: Job, owner: str = "scheduler", task: str = TASK) -> Execution:
    """A running execution owned by ``owner``, with the task id of the message its
    dispatcher published for it recorded."""
    new = storage.add_execution(running(job, owner))
    assert storage.assign_task_ids({new.id: task}, owner=owner) == {new.id}
    return storage.get_execution(new.id)


def test_take_over_moves_a_running_execution_to_its_new_owner(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    assert new.celery_task_id == TASK
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


def take_over(storage: Storage, execution_id: str, **fence: Any) -> Claimed | None:
    """``take_over`` with the legitimate first delivery's fence, unless told otherwise."""
    fence.setdefault("from_owner", "scheduler")
    fence.setdefault("to_owner", "worker")
    fence.setdefault("attempt", 1)
    fence.setdefault("now", LATER)
    fence.setdefault("celery_task_id", TASK)
    return storage.take_over(execution_id, **fence)


def test_take_over_happens_once(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    first = take_over(storage, new.id, to_owner="w1")
    again = take_over(storage, new.id, to_owner="w2")
    assert first is not None and again is None
    assert storage.get_execution(new.id).owner == "w1"


@pytest.mark.parametrize(
    ("from_owner", "attempt"), [("someone-else", 1), ("scheduler", 2)], ids=["owner", "attempt"]
)
def test_take_over_is_fenced_by_owner_and_attempt(
    storage: Storage, from_owner: str, attempt: int
) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    assert take_over(storage, new.id, from_owner=from_owner, attempt=attempt) is None
    assert storage.get_execution(new.id) == new


def test_take_over_refuses_a_message_with_another_task_id(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    # a forged message: the right owner and attempt, but not the id that was published
    assert take_over(storage, new.id, celery_task_id="task-forged") is None
    assert take_over(storage, new.id, celery_task_id="") is None
    assert storage.get_execution(new.id) == new
    # the published message still takes it over
    assert take_over(storage, new.id) is not None


def test_take_over_refuses_an_execution_no_message_was_published_for(storage: Storage) -> None:
    # e.g. one its scheduler runs in its own process: no task id is recorded on it
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    assert take_over(storage, new.id) is None
    assert storage.get_execution(new.id).owner == "scheduler"


def test_take_over_refuses_an_execution_that_started(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    assert take_over(storage, new.id, to_owner="w1") is not None
    started = storage.get_execution(new.id)
    assert (started.owner, started.started_at) == ("w1", LATER)
    # the same message again (redelivered by the broker, or replayed) while it runs
    assert take_over(storage, new.id, to_owner="w2", now=LATER + MINUTE) is None
    assert take_over(storage, new.id, to_owner="w1", now=LATER + MINUTE) is None
    # a message naming the worker that runs it as the owner (forged)
    assert take_over(storage, new.id, from_owner="w1", to_owner="w2") is None
    assert take_over(storage, new.id, from_owner="w1", to_owner="w1") is None
    assert storage.get_execution(new.id) == started
    assert storage.record_outcomes([outcome(new, "w1")]) == [True]


def test_take_over_refuses_a_started_execution_still_owned_by_its_dispatcher(
    storage: Storage,
) -> None:
    # a dispatcher that took its own execution back to run it itself (a publish failed)
    job = add_job(storage, "work")
    new = published(storage, job)
    assert take_over(storage, new.id, to_owner="scheduler") is not None
    started = storage.get_execution(new.id)
    assert (started.owner, started.started_at) == ("scheduler", LATER)
    assert take_over(storage, new.id) is None  # the message reached the broker after all
    assert storage.get_execution(new.id) == started


def test_take_over_of_a_finished_or_unknown_execution_changes_nothing(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    assert storage.record_outcomes([outcome(new, "scheduler")]) == [True]
    before = storage.get_execution(new.id)
    assert take_over(storage, new.id, to_owner="w") is None
    assert storage.get_execution(new.id) == before
    assert take_over(storage, "nope", to_owner="w") is None


def test_a_worker_that_is_not_running_takes_nothing_over(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    storage.register_instance(instance("worker"))
    storage.set_instance_status("worker", InstanceStatus.DEAD)
    assert take_over(storage, new.id) is None
    storage.register_instance(instance("worker"))  # registered again: it may
    assert take_over(storage, new.id)


def test_take_over_cancels_an_execution_whose_job_was_deleted(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    forged = storage.add_execution(running(job, "scheduler", scheduled_for=T0 + MINUTE))
    storage.delete_job("work", now=T0)
    # a message that was not published for it changes nothing, not even that
    assert take_over(storage, forged.id, to_owner="w") is None
    assert storage.get_execution(forged.id).status is ExecutionStatus.RUNNING
    assert take_over(storage, new.id, to_owner="w") is None
    stored = storage.get_execution(new.id)
    assert stored.status is ExecutionStatus.CANCELLED
    assert stored.completed_at == LATER


def test_assign_task_ids_records_one_id_per_waiting_execution(storage: Storage) -> None:
    job = add_job(storage, "work")
    waiting = storage.add_execution(running(job, "scheduler"))
    other = storage.add_execution(running(job, "other", scheduled_for=T0 + MINUTE))
    ended = storage.add_execution(running(job, "scheduler", scheduled_for=T0 + 2 * MINUTE))
    assert storage.record_outcomes([outcome(ended, "scheduler")]) == [True]
    taken = published(storage, job, task="task-0")
    assert take_over(storage, taken.id, celery_task_id="task-0")
    ids = {
        waiting.id: "task-a",
        other.id: "task-b",
        ended.id: "task-c",
        taken.id: "task-d",
        "nope": "task-e",
    }
    assert storage.assign_task_ids(ids, owner="scheduler") == {waiting.id}
    assert storage.get_execution(waiting.id).celery_task_id == "task-a"
    assert storage.get_execution(other.id).celery_task_id is None
    assert storage.get_execution(ended.id).celery_task_id is None
    assert storage.get_execution(taken.id).celery_task_id == "task-0"
    # the id stays the first one: the same again applies, another one does not
    assert storage.assign_task_ids({waiting.id: "task-a"}, owner="scheduler") == {waiting.id}
    assert storage.assign_task_ids({waiting.id: "task-z"}, owner="scheduler") == set()
    assert storage.get_execution(waiting.id).celery_task_id == "task-a"
    assert storage.assign_task_ids({}, owner="scheduler") == set()


@pytest.mark.parametrize("task", ["", "x" * 256, None, 7], ids=["empty", "long", "none", "int"])
def test_assign_task_ids_refuses_a_bad_task_id(storage: Storage, task: Any) -> None:
    job = add_job(storage, "work")
    new = storage.add_execution(running(job, "scheduler"))
    with pytest.raises(InvalidInputError, match="celery_task_id"):
        storage.assign_task_ids({new.id: "task-a", "nope": task}, owner="scheduler")
    assert storage.get_execution(new.id).celery_task_id is None


def test_replace_task_ids_swaps_the_id_of_a_waiting_execution_only(storage: Storage) -> None:
    job = add_job(storage, "work")
    waiting = published(storage, job)
    other = published(storage, job, owner="other", task="task-o")
    bare = storage.add_execution(running(job, "scheduler", scheduled_for=T0 + MINUTE))
    taken = published(storage, job, task="task-t")
    assert take_over(storage, taken.id, celery_task_id="task-t")
    ended = published(storage, job, task="task-e")
    assert storage.record_outcomes([outcome(ended, "scheduler")]) == [True]
    changes = {
        waiting.id: (TASK, "task-2"),
        other.id: ("task-o", "task-x"),  # another instance's
        bare.id: (TASK, "task-x"),  # no id recorded: nothing was published for it
        taken.id: ("task-t", "task-x"),
        ended.id: ("task-e", "task-x"),
        "nope": (TASK, "task-x"),
    }
    assert storage.replace_task_ids(changes, owner="scheduler") == {waiting.id}
    assert storage.get_execution(waiting.id).celery_task_id == "task-2"
    assert storage.get_execution(other.id).celery_task_id == "task-o"
    assert storage.get_execution(bare.id).celery_task_id is None
    assert storage.get_execution(taken.id).celery_task_id == "task-t"
    assert storage.get_execution(ended.id).celery_task_id == "task-e"
    # a repeated call still holds; an old id that is no longer the one does not apply
    assert storage.replace_task_ids({waiting.id: (TASK, "task-2")}, owner="scheduler") == {
        waiting.id
    }
    assert storage.replace_task_ids({waiting.id: (TASK, "task-3")}, owner="scheduler") == set()
    assert storage.replace_task_ids({}, owner="scheduler") == set()
    # the first message starts nothing now; the replacing one does, once
    assert take_over(storage, waiting.id) is None
    assert take_over(storage, waiting.id, celery_task_id="task-2") is not None
    assert take_over(storage, waiting.id, celery_task_id="task-2") is None
    assert storage.replace_task_ids({waiting.id: ("task-2", "task-4")}, owner="scheduler") == set()
    assert storage.get_execution(waiting.id).celery_task_id == "task-2"


@pytest.mark.parametrize(
    "change",
    [("", "task-2"), (TASK, "x" * 256), (TASK, None), (TASK,), TASK],
    ids=["empty", "long", "none", "single", "string"],
)
def test_replace_task_ids_refuses_a_bad_task_id(storage: Storage, change: Any) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    with pytest.raises(InvalidInputError, match="celery_task_id"):
        storage.replace_task_ids({new.id: (TASK, "task-2"), "nope": change}, owner="scheduler")
    assert storage.get_execution(new.id).celery_task_id == TASK


def test_release_puts_a_running_execution_back_to_pending(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    assert storage.release(new.id, owner="other", due_at=LATER) is False
    assert storage.release(new.id, owner="scheduler", due_at=LATER) is True
    stored = storage.get_execution(new.id)
    assert stored.status is ExecutionStatus.PENDING
    assert (stored.owner, stored.dispatched_at, stored.started_at) == (None, None, None)
    assert stored.celery_task_id is None
    assert stored.due_at == LATER
    assert storage.next_due_at() == min(LATER, job.next_run_at or LATER)
    # released work is no longer the old owner's, nor can it be taken over
    assert take_over(storage, new.id, to_owner="w") is None
    assert storage.release(new.id, owner="scheduler", due_at=LATER) is False


def test_a_message_published_before_a_release_takes_nothing_over(storage: Storage) -> None:
    job = add_job(storage, "work", next_run_at=None)
    new = published(storage, job)
    assert storage.release(new.id, owner="scheduler", due_at=T0) is True
    # claimed again by the same instance, at the same attempt
    claimed = storage.claim(now=LATER, owner="scheduler", limit=10, planner=fire_all)
    assert [c.execution.id for c in claimed] == [new.id]
    assert take_over(storage, new.id) is None  # the old message: its id was cleared
    assert storage.assign_task_ids({new.id: "task-2"}, owner="scheduler") == {new.id}
    assert take_over(storage, new.id) is None
    assert take_over(storage, new.id, celery_task_id="task-2") is not None


def test_release_of_taken_over_work_changes_nothing(storage: Storage) -> None:
    job = add_job(storage, "work")
    new = published(storage, job)
    assert take_over(storage, new.id, to_owner="w")
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
