"""A task whose run could not record its own end leaves nothing ``running``.

Celery's soft time limit is an exception raised wherever the pool process happens to
be: after the job returned, while its outcome is being written, it escapes the run's
recording. The worker's main process (``ExecutionRequest.on_failure``) then records
the end itself, fenced like any outcome: an execution this delivery took over and
that is still ``running`` under the (alive) worker ends ``timeout`` (a time limit)
or ``lost`` (how the job ended is unknown); one whose outcome did get written, or
that another delivery owns, is left alone. Without this the execution stayed
``running`` for ever: its worker heartbeats, so the reaper never takes it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

from taskmgr import Execution, ExecutionStatus
from taskmgr.celery.request import _ended_by, child_ended
from taskmgr.celery.states import ExecutionFailedError
from taskmgr.storage import MemoryStorage, Storage
from taskmgr.storage.base import Outcome
from taskmgr.testing import FakeClock
from tests.contract.helpers import add_job, outcome
from tests.contract.test_handover import LATER, TASK, published, take_over

WORKER = "worker"


def taken_over(storage: Storage) -> Execution:
    """A run this worker took over from its dispatcher (as a message would)."""
    new = published(storage, add_job(storage, "escaped.job"))
    assert take_over(storage, new.id, to_owner=WORKER)
    return storage.get_execution(new.id)


def stand_in(storage: Storage, recorded: list[Outcome]) -> Any:
    """What ``child_ended`` uses of the worker's runtime."""

    def record(outcome: Outcome) -> bool:
        recorded.append(outcome)
        return storage.record_outcomes([outcome])[0]

    clock = FakeClock(LATER)
    return SimpleNamespace(
        instance_id=WORKER, runtime=SimpleNamespace(storage=storage, clock=clock), record=record
    )


def fence(execution: Execution) -> dict[str, Any]:
    return {"execution_id": execution.id, "owner": "scheduler", "attempt": 1}


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (SoftTimeLimitExceeded(), ExecutionStatus.TIMEOUT, "soft time limit struck"),
        (TimeLimitExceeded(3.0), ExecutionStatus.TIMEOUT, "hard time limit"),
        (WorkerLostError("signal 9"), ExecutionStatus.LOST, "worker process running it ended"),
        (RuntimeError("boom"), ExecutionStatus.LOST, "RuntimeError before its end"),
    ],
)
def test_an_escaped_end_is_recorded_once(exc: Exception, status: Any, reason: str) -> None:
    storage = MemoryStorage()
    execution = taken_over(storage)
    recorded: list[Outcome] = []
    worker = stand_in(storage, recorded)

    ended = _ended_by(exc)
    assert ended is not None and ended[0] is status and reason in ended[1]
    child_ended(worker, TASK, fence(execution), *ended)
    stored = storage.get_execution(execution.id)
    assert stored.status is status
    assert reason in (stored.error_message or "")

    # reported again (or late): the execution has ended, nothing more is written
    child_ended(worker, TASK, fence(execution), *ended)
    assert len(recorded) == 1


def test_a_run_that_recorded_its_failure_is_not_recorded_again() -> None:
    assert _ended_by(ExecutionFailedError("execution e of 'x' failed: boom")) is None


def test_an_end_recorded_by_the_run_itself_is_kept() -> None:
    storage = MemoryStorage()
    execution = taken_over(storage)
    assert storage.record_outcomes([outcome(execution, WORKER)]) == [True]
    recorded: list[Outcome] = []
    child_ended(stand_in(storage, recorded), TASK, fence(execution), ExecutionStatus.FAILED, "x")
    assert recorded == []
    assert storage.get_execution(execution.id).status is ExecutionStatus.SUCCESS


def test_another_deliverys_execution_is_left_alone() -> None:
    storage = MemoryStorage()
    execution = taken_over(storage)
    recorded: list[Outcome] = []
    worker = stand_in(storage, recorded)
    child_ended(worker, "a-forged-task-id", fence(execution), ExecutionStatus.FAILED, "x")
    assert recorded == []
    assert storage.get_execution(execution.id).status is ExecutionStatus.RUNNING
