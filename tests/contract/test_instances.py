"""Contract: instance rows, heartbeats and reaping the runs of dead instances (G3)."""

from __future__ import annotations

from datetime import timedelta

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, InstanceStatus
from taskmgr.storage.base import Claimed, ExecutionFilter, NewExecution, Storage

from .helpers import MINUTE, T0, add_job, instance, new_execution, running


def test_register_list_and_replace(storage: Storage) -> None:
    assert storage.list_instances() == []
    first = instance("i-1", started_at=T0 - 2 * MINUTE)
    second = instance("i-2", started_at=T0 - MINUTE)
    storage.register_instance(first)
    storage.register_instance(second)
    assert storage.list_instances() == [second, first]  # newest first

    restarted = instance("i-1", started_at=T0, last_heartbeat=T0 + MINUTE)
    storage.register_instance(restarted)
    assert storage.list_instances() == [restarted, second]


def test_heartbeat_and_status(storage: Storage) -> None:
    storage.register_instance(instance("i-1"))
    later = T0 + timedelta(seconds=10, microseconds=7)
    assert storage.heartbeat("i-1", now=later) is True
    [row] = storage.list_instances()
    assert row.last_heartbeat == later

    storage.set_instance_status("i-1", InstanceStatus.STOPPED)
    assert storage.list_instances()[0].status is InstanceStatus.STOPPED
    assert storage.heartbeat("i-1", now=later + MINUTE) is False
    assert storage.list_instances()[0].last_heartbeat == later
    assert storage.heartbeat("unknown", now=later) is False
    storage.set_instance_status("unknown", InstanceStatus.DEAD)  # no error
    assert len(storage.list_instances()) == 1


def test_reap_marks_runs_of_dead_instances_lost(storage: Storage) -> None:
    job = add_job(storage, "work")
    gone_job = add_job(storage, "gone")
    storage.register_instance(instance("dead", last_heartbeat=T0 - 5 * MINUTE))
    storage.register_instance(instance("alive", last_heartbeat=T0))
    storage.register_instance(instance("stopped", last_heartbeat=T0))
    storage.set_instance_status("stopped", InstanceStatus.STOPPED)

    dead_run = storage.add_execution(running(job, "dead", scheduled_for=T0 - 3 * MINUTE))
    stopped_run = storage.add_execution(running(job, "stopped", scheduled_for=T0 - 2 * MINUTE))
    alive_run = storage.add_execution(running(job, "alive", scheduled_for=T0 - MINUTE))
    unknown_owner = storage.add_execution(running(job, "never-registered", scheduled_for=T0))
    pending = storage.add_execution(new_execution(job, scheduled_for=T0 + MINUTE))
    orphan_run = storage.add_execution(running(gone_job, "dead", scheduled_for=T0))
    storage.delete_job("gone", now=T0)

    now = T0 + timedelta(seconds=30)
    reaped = storage.reap(heartbeat_before=T0 - MINUTE, now=now)

    assert sorted(c.execution.id for c in reaped) == sorted([dead_run.id, stopped_run.id])
    for claimed in reaped:
        assert claimed.job.id == job.id
        assert claimed.execution.status is ExecutionStatus.LOST
        assert claimed.execution.completed_at == now
        assert storage.get_execution(claimed.execution.id) == claimed.execution

    lost_orphan = storage.get_execution(orphan_run.id)
    assert lost_orphan.status is ExecutionStatus.LOST  # marked, but not returned
    assert storage.get_execution(alive_run.id) == alive_run
    assert storage.get_execution(unknown_owner.id) == unknown_owner
    assert storage.get_execution(pending.id) == pending

    statuses = {i.id: i.status for i in storage.list_instances()}
    assert statuses == {
        "dead": InstanceStatus.DEAD,
        "alive": InstanceStatus.RUNNING,
        "stopped": InstanceStatus.STOPPED,
    }
    assert storage.heartbeat("dead", now=now) is False  # a zombie learns it was reaped

    # Nothing more to do the second time.
    assert storage.reap(heartbeat_before=T0 - MINUTE, now=now + MINUTE) == []


def test_reap_leaves_live_instances_alone(storage: Storage) -> None:
    job = add_job(storage, "steady")
    storage.register_instance(instance("alive", last_heartbeat=T0))
    run = storage.add_execution(running(job, "alive"))
    assert storage.reap(heartbeat_before=T0, now=T0 + MINUTE) == []  # cutoff is exclusive
    assert storage.get_execution(run.id) == run
    assert storage.list_instances()[0].status is InstanceStatus.RUNNING


def test_reap_inserts_the_retries_it_is_given_in_its_transaction(storage: Storage) -> None:
    job = add_job(storage, "work")
    storage.register_instance(instance("dead", last_heartbeat=T0 - 5 * MINUTE))
    first = storage.add_execution(running(job, "dead", scheduled_for=T0 - 3 * MINUTE))
    second = storage.add_execution(running(job, "dead", scheduled_for=T0 - 2 * MINUTE))
    third = storage.add_execution(running(job, "dead", scheduled_for=T0 - MINUTE))
    # the retry of the second is somehow stored already: it is left out, not doubled
    taken = new_execution(job, scheduled_for=second.scheduled_for, attempt=2, chain_id=second.id)
    storage.add_execution(taken)

    def retry(claimed: Claimed) -> NewExecution | None:
        execution = claimed.execution
        if execution.id == third.id:
            return None  # no retries left
        assert execution.status is ExecutionStatus.LOST
        return new_execution(
            job,
            scheduled_for=execution.scheduled_for,
            attempt=2,
            chain_id=execution.id,
            trigger=ExecutionTrigger.RETRY,
            due_at=T0 + MINUTE,
        )

    reaped = storage.reap(heartbeat_before=T0 - MINUTE, now=T0, retry=retry)
    assert sorted(c.execution.id for c in reaped or []) == sorted([first.id, second.id, third.id])
    attempts = [
        (e.chain_id, e.attempt, e.status)
        for e in storage.list_executions(ExecutionFilter(), limit=10)
        if e.attempt == 2
    ]
    assert sorted(attempts) == sorted(
        [
            (first.id, 2, ExecutionStatus.PENDING),
            (second.id, 2, ExecutionStatus.PENDING),
        ]
    )
    assert storage.get_execution(taken.id).trigger is ExecutionTrigger.MANUAL  # the stored one
