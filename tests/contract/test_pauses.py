"""Contract: pauses of jobs (with until when), of queues and of the whole service, as
every claim honours them, and the end of a pause at its ``until``, once for the
cluster however many claims race."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import ExecutionStatus, JobState, PauseScope
from taskmgr.core.pauses import Pause
from taskmgr.core.triggers import Date, Interval
from taskmgr.exceptions import InvalidInputError
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.base import (
    AuditFilter,
    AuditRecord,
    ClaimBatch,
    Claimed,
    ExecutionFilter,
    Storage,
)
from tests.conftest import OpenStorage

from .helpers import MINUTE, T0, Recorder, add_job, fire_all, new_execution, running

OWNER = "instance-a"
WORK = "tests.contract.work"
SECOND = timedelta(seconds=1)
#: Every minute, on the minutes of T0.
EVERY_MINUTE = Interval(MINUTE, start=T0 - 60 * MINUTE)


def plan_for(owner: str = OWNER) -> Planner:
    return Planner(owner, {WORK})


def record(action: AuditAction, actor: str = "alice") -> AuditRecord:
    return AuditRecord(action=action, source=AuditSource.API, at=T0, actor=actor)


def queue_pause(name: str, *, until: object = None, reason: str | None = "freeze") -> Pause:
    return Pause(
        scope=PauseScope.QUEUE,
        name=name,
        paused_by="alice",
        reason=reason,
        paused_at=T0 - MINUTE,
        until=until,
    )


def service_pause(*, until: object = None) -> Pause:
    return Pause(
        scope=PauseScope.SERVICE,
        name=None,
        paused_by="bob",
        reason="deploy",
        paused_at=T0 - MINUTE,
        until=until,
    )


def rows_of(storage: Storage, key: str) -> list[object]:
    return list(storage.list_executions(ExecutionFilter(job_key=key), limit=100))


def pause_job(storage: Storage, key: str, *, until: object) -> None:
    changes = {
        "state": JobState.PAUSED,
        "paused_by": "alice",
        "paused_reason": "maintenance",
        "paused_at": T0 - 10 * MINUTE,
        "paused_until": until,
    }
    storage.update_job(key, changes, now=T0 - 10 * MINUTE)


# -- pauses of queues and of the service ---------------------------------------------


def test_pauses_are_stored_replaced_listed_and_removed_with_their_entries(
    storage: Storage,
) -> None:
    first = storage.set_pause(queue_pause("reports"), audit=record(AuditAction.PAUSE))
    assert first == queue_pause("reports")
    storage.set_pause(service_pause(until=T0 + MINUTE))
    assert storage.set_pause(queue_pause("reports")) == first  # the same: nothing written
    replaced = storage.set_pause(
        queue_pause("reports", reason="longer", until=T0 + 9 * MINUTE).model_copy(
            update={"paused_at": T0, "paused_by": "carol"}
        ),
        audit=record(AuditAction.PAUSE, "carol"),
    )
    assert replaced.paused_at == T0 - MINUTE  # since when it is paused is kept
    assert (replaced.reason, replaced.paused_by) == ("longer", "carol")
    storage.set_pause(queue_pause("emails"))

    listed = storage.list_pauses(now=T0)
    assert [(p.scope, p.name) for p in listed] == [
        (PauseScope.SERVICE, None),
        (PauseScope.QUEUE, "emails"),
        (PauseScope.QUEUE, "reports"),
    ]
    # a pause whose until has come is no longer in effect
    assert [p.scope for p in storage.list_pauses(now=T0 + MINUTE)] == [PauseScope.QUEUE] * 2

    removed = storage.delete_pause(PauseScope.QUEUE, "reports", audit=record(AuditAction.RESUME))
    assert removed == replaced
    assert (
        storage.delete_pause(PauseScope.QUEUE, "reports", audit=record(AuditAction.RESUME)) is None
    )

    entries = storage.list_audit(AuditFilter(), limit=10)
    assert [(e.action, e.actor, e.job_key) for e in entries] == [
        (AuditAction.RESUME, "alice", None),
        (AuditAction.PAUSE, "carol", None),
        (AuditAction.PAUSE, "alice", None),
    ]
    resume, change, pause = entries
    assert resume.details["pause"]["reason"] == "longer"
    assert change.details["before"]["reason"] == "freeze"
    assert change.details["pause"]["until"] is not None
    assert pause.details["pause"]["name"] == "reports"


def test_a_pause_must_name_what_it_pauses(storage: Storage) -> None:
    with pytest.raises(InvalidInputError):
        storage.set_pause(queue_pause("x").model_copy(update={"scope": PauseScope.JOB}))
    with pytest.raises(InvalidInputError):
        storage.set_pause(service_pause().model_copy(update={"name": "x"}))
    with pytest.raises(InvalidInputError):
        storage.set_pause(queue_pause("x").model_copy(update={"name": None}))
    assert storage.list_pauses(now=T0) == []


def test_a_paused_queue_holds_its_jobs_and_their_runs(storage: Storage) -> None:
    held = add_job(storage, "held", next_run_at=T0 - MINUTE, queue="reports", trigger=EVERY_MINUTE)
    free = add_job(storage, "free", next_run_at=T0 - MINUTE, queue="emails", trigger=EVERY_MINUTE)
    add_job(storage, "none", next_run_at=T0 - MINUTE, trigger=EVERY_MINUTE)
    once = add_job(
        storage, "once", next_run_at=T0 - MINUTE, queue="reports", trigger=Date(T0 - MINUTE)
    )
    waiting = storage.add_execution(new_execution(held, scheduled_for=T0 - MINUTE))
    other = storage.add_execution(new_execution(free, scheduled_for=T0 - MINUTE))
    storage.set_pause(queue_pause("reports"))

    seen: list[ClaimBatch] = []
    planner = plan_for()

    def plan(batch: ClaimBatch):  # type: ignore[no-untyped-def]
        seen.append(batch)
        return planner(batch)

    claimed = storage.claim(now=T0, owner=OWNER, limit=10, planner=plan)
    [batch] = seen
    assert [(p.scope, p.name) for p in batch.pauses] == [(PauseScope.QUEUE, "reports")]
    # the held one-shot job keeps its slot and is not read; the held pending run waits
    assert sorted(j.key for j in batch.due_jobs) == ["free", "held", "none"]
    assert [e.id for e in batch.due_pending] == [other.id]
    # "free" starts its pending run (and skips its slot: one run at a time), "none" its slot
    assert sorted(c.execution.job_key for c in claimed) == ["free", "none"]
    assert other.id in {c.execution.id for c in claimed}
    assert held.queue == "reports"

    # the held job's slots passed: neither run nor recorded; it goes on after now
    assert rows_of(storage, "held") == [storage.get_execution(waiting.id)]
    assert storage.get_execution(waiting.id).status is ExecutionStatus.PENDING
    assert storage.get_job("held").next_run_at == T0 + MINUTE
    assert storage.get_job("once") == once
    assert storage.get_job("free").next_run_at == storage.get_job("none").next_run_at == T0 + MINUTE
    # held jobs and their pending runs are not due work: the loop does not spin on them
    storage.set_pause(queue_pause("emails"))
    assert storage.next_due_at() == T0 + MINUTE  # "none", alone
    storage.delete_pause(PauseScope.QUEUE, "emails")

    # resumed: the waiting run starts, the one-shot job's slot is decided by its policy
    storage.delete_pause(PauseScope.QUEUE, "reports")
    again = Recorder(fire_all)
    claimed = storage.claim(now=T0 + SECOND, owner=OWNER, limit=10, planner=again)
    assert [j.key for j in again.batch.due_jobs] == ["once"]
    assert [e.id for e in again.batch.due_pending] == [waiting.id]
    assert {c.execution.job_key for c in claimed} == {"once", "held"}


def test_a_paused_service_starts_nothing_and_deferred_runs_wait(storage: Storage) -> None:
    job = add_job(storage, "any", next_run_at=T0 - MINUTE, trigger=EVERY_MINUTE)
    waiting = storage.add_execution(new_execution(job, scheduled_for=T0 - MINUTE))
    storage.set_pause(service_pause(until=T0 + 5 * MINUTE))

    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=plan_for()) == []
    assert rows_of(storage, "any") == [storage.get_execution(waiting.id)]
    assert storage.get_job("any").next_run_at == T0 + MINUTE  # it goes on after now
    # nothing is due but the end of the pause (and the job's next slot is held)
    assert storage.next_due_at() == T0 + 5 * MINUTE
    # deferred meanwhile: it waits too
    later = storage.add_execution(new_execution(job, scheduled_for=T0 + SECOND))
    assert storage.claim(now=T0 + 2 * SECOND, owner=OWNER, limit=10, planner=plan_for()) == []
    assert storage.get_execution(later.id).status is ExecutionStatus.PENDING


def test_a_pause_ends_at_its_until_once_with_its_entry(
    open_storage: OpenStorage, backend: str
) -> None:
    storage = open_storage()
    add_job(storage, "resumes", next_run_at=T0 - MINUTE, queue="reports", trigger=EVERY_MINUTE)
    storage.set_pause(queue_pause("reports", until=T0 + 30 * SECOND))
    storage.set_pause(service_pause(until=T0 + 40 * SECOND))
    storage.claim(now=T0, owner=OWNER, limit=10, planner=plan_for())
    assert storage.get_job("resumes").next_run_at == T0 + MINUTE

    others = [open_storage() for _ in range(3)] if backend != "memory" else [storage] * 3
    claimed = _race([storage, *others], now=T0 + MINUTE)
    assert [c.execution.job_key for c in claimed] == ["resumes"]  # its slot at T0 + MINUTE
    assert storage.list_pauses(now=T0) == []
    ends = storage.list_audit(AuditFilter(actions=[AuditAction.RESUME]), limit=10)
    assert sorted((e.actor, e.source, e.details["pause"]["scope"]) for e in ends) == [
        ("taskmgr", AuditSource.SCHEDULE, "queue"),
        ("taskmgr", AuditSource.SCHEDULE, "service"),
    ]
    assert all(e.at == T0 + MINUTE and e.job_key is None for e in ends)


# -- a job's pause until a time ---------------------------------------------------------


def test_a_job_paused_until_a_time_resumes_then_once_for_the_cluster(
    open_storage: OpenStorage, backend: str
) -> None:
    storage = open_storage()
    add_job(storage, "paused", next_run_at=T0 - 30 * MINUTE, trigger=EVERY_MINUTE)
    until = T0 + 30 * SECOND
    pause_job(storage, "paused", until=until)
    assert storage.next_due_at() == until  # the loop wakes up for it

    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=plan_for()) == []
    assert storage.get_job("paused").state is JobState.PAUSED

    others = [open_storage() for _ in range(3)] if backend != "memory" else [storage] * 3
    # T0 + 30 s: the slot at the until minute runs (the first slot at or after until)
    claimed = _race([storage, *others], now=T0 + MINUTE)
    assert [c.execution.scheduled_for for c in claimed] == [T0 + MINUTE]
    resumed = storage.get_job("paused")
    assert resumed.state is JobState.ACTIVE
    assert (resumed.paused_by, resumed.paused_reason, resumed.paused_at, resumed.paused_until) == (
        None,
        None,
        None,
        None,
    )
    assert resumed.next_run_at == T0 + 2 * MINUTE
    [entry] = storage.list_audit(AuditFilter(actions=[AuditAction.RESUME]), limit=10)
    assert (entry.actor, entry.source, entry.job_key, entry.at) == (
        "taskmgr",
        AuditSource.SCHEDULE,
        "paused",
        T0 + MINUTE,
    )
    assert entry.details["changes"]["state"] == {"before": "paused", "after": "active"}
    assert entry.details["changes"]["paused_reason"]["before"] == "maintenance"
    assert entry.details["pause"]["until"] is not None
    # slots that fell while it was paused were not recorded
    assert len(rows_of(storage, "paused")) == 1


def test_pause_fields_go_with_the_paused_state(storage: Storage) -> None:
    add_job(storage, "j", next_run_at=T0)
    pause_job(storage, "j", until=T0 + MINUTE)
    paused = storage.get_job("j")
    assert (paused.paused_by, paused.paused_until) == ("alice", T0 + MINUTE)
    active = storage.update_job("j", {"state": JobState.ACTIVE}, now=T0)
    assert (active.paused_by, active.paused_reason, active.paused_at, active.paused_until) == (
        None,
        None,
        None,
        None,
    )
    with pytest.raises(InvalidInputError):
        storage.update_job("j", {"state": JobState.PAUSED, "paused_reason": "x" * 501}, now=T0)
    assert storage.get_job("j") == active


def test_queued_runs_of_a_full_job_do_not_hold_up_other_work(storage: Storage) -> None:
    busy = add_job(storage, "busy", next_run_at=None)
    other = add_job(storage, "other", next_run_at=None)
    storage.add_execution(running(busy, "someone", scheduled_for=T0 - 9 * MINUTE))
    for n in range(5):
        storage.add_execution(new_execution(busy, scheduled_for=T0 - (8 - n) * MINUTE, queued=True))
    waiting = storage.add_execution(new_execution(other, scheduled_for=T0 - MINUTE))
    planner = Recorder(fire_all)
    claimed = storage.claim(now=T0, owner=OWNER, limit=2, planner=planner)
    assert [e.id for e in planner.batch.due_pending] == [waiting.id]
    assert [c.execution.id for c in claimed] == [waiting.id]


def _race(storages: list[Storage], *, now: datetime) -> list[Claimed]:
    """Every storage claims at ``now`` from its own thread at once (owners apart)."""
    barrier = threading.Barrier(len(storages))
    claimed: list[Claimed] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(storage: Storage, owner: str) -> None:
        try:
            barrier.wait(timeout=30)
            got = storage.claim(now=now, owner=owner, limit=10, planner=plan_for(owner))
            with lock:
                claimed.extend(got)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(storage, f"owner-{n}"))
        for n, storage in enumerate(storages)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return claimed
