"""Contract: claiming due work (G1: at most one start per slot) and next_due_at."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, JobState
from taskmgr.storage.base import ClaimPlan, ExecutionFilter, PendingDecision, Storage
from tests.conftest import OpenStorage

from .helpers import (
    MINUTE,
    T0,
    Recorder,
    add_job,
    advance,
    fire_all,
    new_execution,
    outcome,
    running,
)

OWNER = "instance-a"


def executions_of(storage: Storage, key: str) -> list[object]:
    return list(storage.list_executions(ExecutionFilter(job_key=key), limit=1000))


def test_due_job_advance_inserts_executions_and_returns_running(storage: Storage) -> None:
    job = add_job(storage, "due", next_run_at=T0 - MINUTE, kwargs={"a": 1})
    now = T0 + timedelta(seconds=1)

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        missed = advance(due, slots=[T0 - MINUTE], status=ExecutionStatus.MISSED, now=now)
        ran = advance(due, slots=[T0], now=now)
        return ClaimPlan(
            advances=[
                replace(
                    ran,
                    next_run_at=T0 + MINUTE,
                    executions=[*missed.executions, *ran.executions],
                )
            ]
        )

    planner = Recorder(plan)
    claimed = storage.claim(now=now, owner=OWNER, limit=10, planner=planner)

    batch = planner.batch
    assert batch.now == now
    assert [j.key for j in batch.due_jobs] == ["due"]
    assert batch.jobs == {job.id: job}
    assert batch.active == {job.id: 0}
    assert batch.due_pending == []

    assert len(claimed) == 1
    execution, claimed_job = claimed[0].execution, claimed[0].job
    assert execution.status is ExecutionStatus.RUNNING
    assert execution.owner == OWNER
    assert execution.dispatched_at is not None
    assert execution.scheduled_for == T0
    assert execution.kwargs == {"a": 1}
    assert claimed_job.id == job.id and claimed_job.next_run_at == T0 + MINUTE
    assert storage.get_execution(execution.id) == execution

    stored = storage.get_job("due")
    assert stored.next_run_at == T0 + MINUTE
    assert stored.last_run_at == T0
    assert stored.version == job.version  # claims are not operator edits
    statuses = sorted(e.status.value for e in storage.list_executions(ExecutionFilter(), limit=10))
    assert statuses == ["missed", "running"]


def test_claim_keeps_last_run_at_when_advance_has_none(storage: Storage) -> None:
    add_job(storage, "skip", next_run_at=T0)
    storage.claim(now=T0, owner=OWNER, limit=10, planner=fire_all)
    assert storage.get_job("skip").last_run_at == T0

    def skip_only(batch):  # type: ignore[no-untyped-def]
        return ClaimPlan(
            advances=[advance(j, status=ExecutionStatus.SKIPPED) for j in batch.due_jobs]
        )

    assert storage.claim(now=T0 + MINUTE, owner=OWNER, limit=10, planner=skip_only) == []
    job = storage.get_job("skip")
    assert job.next_run_at == T0 + 2 * MINUTE
    assert job.last_run_at == T0


def test_jobs_not_due_paused_or_orphaned_are_not_read(storage: Storage) -> None:
    add_job(storage, "later", next_run_at=T0 + timedelta(microseconds=1))
    add_job(storage, "paused", next_run_at=T0 - MINUTE, state=JobState.PAUSED)
    add_job(storage, "orphan", next_run_at=T0 - MINUTE, state=JobState.ORPHANED)
    add_job(storage, "never", next_run_at=None)
    add_job(storage, "exactly-now", next_run_at=T0)
    planner = Recorder(fire_all)
    claimed = storage.claim(now=T0, owner=OWNER, limit=10, planner=planner)
    assert [j.key for j in planner.batch.due_jobs] == ["exactly-now"]
    assert [c.job.key for c in claimed] == ["exactly-now"]
    assert storage.get_job("later").next_run_at == T0 + timedelta(microseconds=1)


def test_claim_reads_earliest_first_up_to_limit(storage: Storage) -> None:
    for n in range(5):
        add_job(storage, f"j{n}", next_run_at=T0 - n * MINUTE)
    planner = Recorder()
    storage.claim(now=T0, owner=OWNER, limit=3, planner=planner)
    assert [j.key for j in planner.batch.due_jobs] == ["j4", "j3", "j2"]


def test_stale_compare_and_set_loses_and_inserts_nothing(storage: Storage) -> None:
    job = add_job(storage, "cas", next_run_at=T0)

    def stale(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        # As if another instance advanced the job since this planner read it.
        return ClaimPlan(advances=[advance(due, expected=T0 - MINUTE)])

    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=stale) == []
    assert storage.get_job("cas") == job
    assert executions_of(storage, "cas") == []


def test_advance_loses_when_the_job_moved_in_between(storage: Storage) -> None:
    add_job(storage, "moved", next_run_at=T0)

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        return ClaimPlan(advances=[advance(due), advance(due)])  # the second one is stale

    claimed = storage.claim(now=T0, owner=OWNER, limit=10, planner=plan)
    assert len(claimed) == 1
    assert len(executions_of(storage, "moved")) == 1
    assert storage.get_job("moved").next_run_at == T0 + MINUTE


def test_existing_slot_makes_the_advance_lose_as_a_whole(storage: Storage) -> None:
    job = add_job(storage, "slot", next_run_at=T0 - MINUTE)
    other = add_job(storage, "other", next_run_at=T0)
    taken = storage.add_execution(
        new_execution(job, scheduled_for=T0, trigger=ExecutionTrigger.SCHEDULE)
    )

    def plan(batch):  # type: ignore[no-untyped-def]
        by_key = {j.key: j for j in batch.due_jobs}
        return ClaimPlan(
            advances=[
                advance(by_key["slot"], slots=[T0 - MINUTE, T0]),  # T0 already exists
                advance(by_key["other"]),
            ]
        )

    claimed = storage.claim(now=T0, owner=OWNER, limit=10, planner=plan)
    assert [c.job.key for c in claimed] == ["other"]
    assert storage.get_job("slot") == job  # next_run_at not moved
    assert [e.id for e in executions_of(storage, "slot")] == [taken.id]
    assert storage.get_job("other").next_run_at == other.next_run_at + MINUTE  # type: ignore[operator]


def test_duplicate_slot_inside_one_advance_loses(storage: Storage) -> None:
    job = add_job(storage, "twice", next_run_at=T0)

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        return ClaimPlan(advances=[advance(due, slots=[T0, T0])])

    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=plan) == []
    assert storage.get_job("twice") == job
    assert executions_of(storage, "twice") == []


def test_running_inserts_belong_to_the_claimer(storage: Storage) -> None:
    add_job(storage, "own", next_run_at=T0)

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        adv = advance(due)
        rows = [replace(row, owner=None, dispatched_at=None) for row in adv.executions]
        return ClaimPlan(advances=[replace(adv, executions=rows)])

    [claimed] = storage.claim(now=T0, owner=OWNER, limit=10, planner=plan)
    stored = storage.get_execution(claimed.execution.id)
    assert stored.owner == OWNER
    assert stored.dispatched_at == T0
    assert stored == claimed.execution


def test_pending_decisions_start_and_cancel(storage: Storage) -> None:
    job = add_job(storage, "pend", next_run_at=T0 + MINUTE)
    start = storage.add_execution(new_execution(job, scheduled_for=T0 - MINUTE))
    cancel = storage.add_execution(new_execution(job, scheduled_for=T0 - 2 * MINUTE))
    not_due = storage.add_execution(new_execution(job, scheduled_for=T0 + MINUTE))
    now = T0 + timedelta(seconds=3)

    def plan(batch):  # type: ignore[no-untyped-def]
        return ClaimPlan(
            pending=[
                PendingDecision(start.id, ExecutionStatus.RUNNING),
                PendingDecision(cancel.id, ExecutionStatus.CANCELLED, error_message="paused"),
            ]
        )

    planner = Recorder(plan)
    claimed = storage.claim(now=now, owner=OWNER, limit=10, planner=planner)
    batch = planner.batch
    assert [e.id for e in batch.due_pending] == [cancel.id, start.id]  # earliest due first
    assert batch.jobs == {job.id: job}
    assert batch.active == {job.id: 3}  # pending, not queued, counts

    assert len(claimed) == 1
    started = claimed[0].execution
    assert claimed[0].job == job
    assert started.id == start.id
    assert started.status is ExecutionStatus.RUNNING
    assert started.owner == OWNER
    assert started.dispatched_at == now
    assert storage.get_execution(start.id) == started

    cancelled = storage.get_execution(cancel.id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.completed_at == now
    assert cancelled.error_message == "paused"
    assert storage.get_execution(not_due.id) == not_due


def test_pending_already_started_is_not_started_twice(storage: Storage) -> None:
    job = add_job(storage, "once", next_run_at=None)
    pending = storage.add_execution(new_execution(job, scheduled_for=T0))
    decision = PendingDecision(pending.id, ExecutionStatus.RUNNING)

    first = storage.claim(
        now=T0, owner="a", limit=10, planner=lambda b: ClaimPlan(pending=[decision])
    )
    assert [c.execution.id for c in first] == [pending.id]
    # A planner that still believes it is pending (e.g. another instance's stale plan).
    second = storage.claim(
        now=T0, owner="b", limit=10, planner=lambda b: ClaimPlan(pending=[decision])
    )
    assert second == []
    stored = storage.get_execution(pending.id)
    assert stored.owner == "a" and stored.status is ExecutionStatus.RUNNING

    cancel = PendingDecision(pending.id, ExecutionStatus.CANCELLED)
    storage.claim(now=T0, owner="b", limit=10, planner=lambda b: ClaimPlan(pending=[cancel]))
    assert storage.get_execution(pending.id).status is ExecutionStatus.RUNNING


def test_pending_of_a_deleted_job_is_seen_without_its_job(storage: Storage) -> None:
    job = add_job(storage, "deleted", next_run_at=None)
    run = storage.add_execution(running(job, OWNER, scheduled_for=T0 - MINUTE))
    pending = storage.add_execution(new_execution(job, scheduled_for=T0, due_at=T0))
    storage.delete_job("deleted", now=T0 - timedelta(seconds=2))
    assert storage.get_execution(pending.id).status is ExecutionStatus.CANCELLED
    assert storage.get_execution(run.id).status is ExecutionStatus.RUNNING

    # The running attempt fails after the delete; its retry is written anyway.
    retry = new_execution(job, scheduled_for=T0 - MINUTE, attempt=2, due_at=T0)
    assert storage.record_outcomes(
        [outcome(run, OWNER, status=ExecutionStatus.FAILED, retry=retry)]
    ) == [True]

    def cancel_all(batch):  # type: ignore[no-untyped-def]
        return ClaimPlan(
            pending=[PendingDecision(e.id, ExecutionStatus.CANCELLED) for e in batch.due_pending]
        )

    planner = Recorder(cancel_all)
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=planner) == []
    assert [e.id for e in planner.batch.due_pending] == [retry.id]
    assert planner.batch.jobs == {}
    assert storage.get_execution(retry.id).status is ExecutionStatus.CANCELLED


def test_starting_a_pending_run_of_a_deleted_job_does_nothing(storage: Storage) -> None:
    job = add_job(storage, "deleted", next_run_at=None)
    run = storage.add_execution(running(job, OWNER, scheduled_for=T0 - MINUTE))
    storage.delete_job("deleted", now=T0 - timedelta(seconds=2))
    retry = new_execution(job, scheduled_for=T0 - MINUTE, attempt=2, due_at=T0)
    storage.record_outcomes([outcome(run, OWNER, status=ExecutionStatus.FAILED, retry=retry)])
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=fire_all) == []
    assert storage.get_execution(retry.id).status is ExecutionStatus.PENDING


def test_active_counts_running_and_unqueued_pending(storage: Storage) -> None:
    job = add_job(storage, "busy", next_run_at=T0, max_instances=5)
    idle = add_job(storage, "idle", next_run_at=T0)
    storage.add_execution(running(job, "x", scheduled_for=T0 - 3 * MINUTE))
    storage.add_execution(new_execution(job, scheduled_for=T0 - 2 * MINUTE, due_at=T0 + MINUTE))
    storage.add_execution(
        new_execution(job, scheduled_for=T0 - MINUTE, due_at=T0 + MINUTE, queued=True)
    )
    storage.add_execution(
        new_execution(
            job,
            scheduled_for=T0 - 4 * MINUTE,
            status=ExecutionStatus.SUCCESS,
            completed_at=T0 - 3 * MINUTE,
        )
    )
    planner = Recorder()
    storage.claim(now=T0, owner=OWNER, limit=10, planner=planner)
    assert planner.batch.active == {job.id: 2, idle.id: 0}


def test_queued_pending_is_read_when_due(storage: Storage) -> None:
    job = add_job(storage, "queue", next_run_at=None)
    queued = storage.add_execution(new_execution(job, scheduled_for=T0, queued=True))
    planner = Recorder(fire_all)
    [claimed] = storage.claim(now=T0, owner=OWNER, limit=10, planner=planner)
    assert [e.id for e in planner.batch.due_pending] == [queued.id]
    assert claimed.execution.id == queued.id


def test_orphan_marks(storage: Storage) -> None:
    job = add_job(storage, "orphan-me", next_run_at=T0)
    keep = add_job(storage, "keep", next_run_at=T0)

    def plan(batch):  # type: ignore[no-untyped-def]
        return ClaimPlan(orphan_job_ids=[job.id])

    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=plan) == []
    marked = storage.get_job("orphan-me")
    assert marked.state is JobState.ORPHANED
    assert marked.next_run_at == T0
    assert storage.get_job("keep") == keep
    planner = Recorder()
    storage.claim(now=T0, owner=OWNER, limit=10, planner=planner)
    assert [j.key for j in planner.batch.due_jobs] == ["keep"]


def test_empty_claim_calls_the_planner_once(storage: Storage) -> None:
    planner = Recorder()
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=planner) == []
    assert planner.batch.due_jobs == [] and planner.batch.due_pending == []


def test_planner_error_writes_nothing(storage: Storage) -> None:
    job = add_job(storage, "boom", next_run_at=T0)

    def broken(batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("planner bug")

    with pytest.raises(RuntimeError, match="planner bug"):
        storage.claim(now=T0, owner=OWNER, limit=10, planner=broken)
    assert storage.get_job("boom") == job
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=fire_all) != []


def _race(storages: list[Storage], rounds: int) -> list[str]:
    """Every storage claims the same due slots from its own thread at once."""
    barrier = threading.Barrier(len(storages))
    claimed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(storage: Storage, owner: str) -> None:
        try:
            for n in range(rounds):
                barrier.wait(timeout=30)
                now = T0 + n * MINUTE
                got = storage.claim(now=now, owner=owner, limit=100, planner=fire_all)
                with lock:
                    claimed.extend(c.execution.id for c in got)
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


@pytest.mark.parametrize("separate", [False, True], ids=["threads", "separate-storages"])
def test_concurrent_claims_start_each_slot_once(
    open_storage: OpenStorage, backend: str, separate: bool
) -> None:
    if separate and backend == "memory":
        pytest.skip("a MemoryStorage is not shared between objects")
    storages = [open_storage() for _ in range(4)] if separate else [open_storage()] * 4
    jobs = [add_job(storages[0], f"race-{n}", next_run_at=T0) for n in range(10)]
    rounds = 5
    claimed = _race(storages, rounds)

    assert len(claimed) == len(set(claimed)) == len(jobs) * rounds
    for job in jobs:
        rows = executions_of(storages[0], job.key)
        slots = sorted(e.scheduled_for for e in rows)  # type: ignore[attr-defined]
        assert slots == [T0 + n * MINUTE for n in range(rounds)]
        assert storages[0].get_job(job.key).next_run_at == T0 + rounds * MINUTE


def test_next_due_at(storage: Storage) -> None:
    assert storage.next_due_at() is None
    job = add_job(storage, "later", next_run_at=T0 + 10 * MINUTE)
    add_job(storage, "paused", next_run_at=T0, state=JobState.PAUSED)
    add_job(storage, "none", next_run_at=None)
    assert storage.next_due_at() == T0 + 10 * MINUTE

    storage.add_execution(new_execution(job, scheduled_for=T0, due_at=T0 + MINUTE, queued=True))
    assert storage.next_due_at() == T0 + 10 * MINUTE  # queued runs wait for a free slot
    storage.add_execution(new_execution(job, scheduled_for=T0, attempt=2, due_at=T0 + 2 * MINUTE))
    assert storage.next_due_at() == T0 + 2 * MINUTE
    storage.add_execution(running(job, OWNER, scheduled_for=T0 - MINUTE))
    assert storage.next_due_at() == T0 + 2 * MINUTE


def test_next_claim_at_is_never_later_than_a_claim_finds_work(storage: Storage) -> None:
    """What an idle scheduler polls instead of claiming: next_due_at, or ``now`` while
    a queued run due by then waits (the run ahead of it may have ended); a backend
    that cannot tell answers ``now`` (the claim is then the poll)."""
    exact = type(storage).next_claim_at is not Storage.next_claim_at
    later = T0 + 10 * MINUTE

    def check(now: object, expected: object) -> None:
        assert storage.next_claim_at(now=now) == (expected if exact else now)  # type: ignore[arg-type]

    check(T0, None)
    job = add_job(storage, "later", next_run_at=later)
    add_job(storage, "paused", next_run_at=T0 - MINUTE, state=JobState.PAUSED)
    check(T0, later)
    storage.add_execution(new_execution(job, scheduled_for=T0, due_at=T0 + MINUTE, queued=True))
    check(T0, later)  # the queued run is not due yet
    check(T0 + 2 * MINUTE, T0 + 2 * MINUTE)  # due and waiting: claim now
    check(later + MINUTE, later)  # the job's slot came first
