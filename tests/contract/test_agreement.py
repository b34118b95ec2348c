"""Contract: the points where the memory and SQL backends used to disagree (input
checks, id reuse, tie-breaks, messages, all-or-nothing writes), on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from taskmgr.core.models import (
    ExecutionStatus,
    ExecutionTrigger,
    InstanceStatus,
    JobSource,
    JobState,
)
from taskmgr.core.rules import is_active_run
from taskmgr.exceptions import (
    ConflictError,
    InvalidDatetimeError,
    InvalidInputError,
    InvalidKwargsError,
    InvalidPolicyError,
    JobBusyError,
    JobExistsError,
)
from taskmgr.storage.base import ClaimPlan, ExecutionFilter, PendingDecision, Storage

from .helpers import (
    MINUTE,
    T0,
    Recorder,
    add_job,
    advance,
    fire_all,
    instance,
    new_execution,
    outcome,
    running,
)

ALL = ExecutionFilter()
NAIVE = T0.replace(tzinfo=None)


def _uuid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def test_a_new_job_never_gets_the_id_of_a_deleted_job_with_history(storage: Storage) -> None:
    add_job(storage, "first")
    last = add_job(storage, "last")
    storage.add_execution(running(last, "o"))
    storage.delete_job("last", now=T0)
    again = add_job(storage, "again")
    assert again.id != last.id
    # so the kept running execution is not counted as the new job's
    storage.add_execution(new_execution(again, status=ExecutionStatus.PENDING), max_active=1)


def test_list_jobs_orders_keys_by_code_point(storage: Storage) -> None:
    keys = ["a_b", "B", "a-b", "a", "a.b", "Z9", "job:1"]
    for key in keys:
        add_job(storage, key, source=JobSource.API if key == "B" else JobSource.CODE)
    assert [j.key for j in storage.list_jobs()] == sorted(keys)
    assert [j.key for j in storage.list_jobs(after_key="a", limit=2)] == ["a-b", "a.b"]
    # values of the enums are accepted as the members
    assert [j.key for j in storage.list_jobs(source="api")] == ["B"]  # type: ignore[arg-type]
    assert len(storage.list_jobs(states=["active"])) == len(keys)  # type: ignore[list-item]


def test_bad_enum_values_and_limits_are_invalid_input(storage: Storage) -> None:
    storage.register_instance(instance("i1"))
    bad = [
        lambda: storage.list_jobs(states=["bogus"]),  # type: ignore[list-item]
        lambda: storage.list_jobs(source="bogus"),  # type: ignore[arg-type]
        lambda: storage.list_jobs(limit=-1),
        lambda: storage.list_executions(ExecutionFilter(statuses=["bogus"]), limit=5),  # type: ignore[list-item]
        lambda: storage.list_executions(ALL, limit=-1),
        lambda: storage.set_instance_status("i1", "asleep"),  # type: ignore[arg-type]
        lambda: storage.claim(now=T0, owner="i1", limit=-1, planner=fire_all),
    ]
    for call in bad:
        with pytest.raises(InvalidInputError):
            call()
    assert storage.list_instances()[0].status is InstanceStatus.RUNNING


def test_an_instance_status_given_as_its_value_is_stored_as_the_member(storage: Storage) -> None:
    add_job(storage, "due", next_run_at=T0)
    storage.register_instance(instance("i1"))
    storage.set_instance_status("i1", "stopped")  # type: ignore[arg-type]
    storage.set_instance_status("i1", "running")  # type: ignore[arg-type]
    assert storage.list_instances()[0].status is InstanceStatus.RUNNING
    assert len(storage.claim(now=T0, owner="i1", limit=10, planner=fire_all)) == 1


def test_naive_datetimes_are_refused_before_anything_is_written(storage: Storage) -> None:
    job = add_job(storage, "j", next_run_at=T0)
    run = storage.add_execution(running(job, "o"))
    storage.register_instance(instance("o"))
    refused = [
        lambda: add_job(storage, "naive", now=NAIVE),
        lambda: storage.add_execution(new_execution(job, scheduled_for=NAIVE)),
        lambda: storage.record_outcomes([outcome(run, "o", completed_at=NAIVE)]),
        lambda: storage.register_instance(instance("other", last_heartbeat=NAIVE)),
        lambda: storage.heartbeat("o", now=NAIVE),
        lambda: storage.release(run.id, owner="o", due_at=NAIVE),
        lambda: storage.claim(now=NAIVE, owner="o", limit=10, planner=fire_all),
        lambda: storage.update_job("j", {"next_run_at": NAIVE}, now=T0),
        lambda: storage.delete_job("j", now=NAIVE),
        lambda: storage.list_executions(ExecutionFilter(since=NAIVE), limit=5),
        lambda: storage.reap(heartbeat_before=NAIVE, now=T0),
    ]
    for call in refused:
        with pytest.raises(InvalidDatetimeError):
            call()
    assert [j.key for j in storage.list_jobs()] == ["j"]
    assert storage.get_job("j").version == 1
    assert storage.get_execution(run.id) == run
    assert [i.id for i in storage.list_instances()] == ["o"]


def test_datetimes_come_back_in_utc(storage: Storage) -> None:
    east = timezone(timedelta(hours=2))
    job = add_job(storage, "tz", next_run_at=T0.astimezone(east), now=T0.astimezone(east))
    assert job.next_run_at is not None and job.next_run_at.tzinfo is UTC
    assert job.created_at.tzinfo is UTC
    assert storage.get_job("tz") == job


def test_add_job_checks_its_input_before_looking_for_the_key(storage: Storage) -> None:
    add_job(storage, "taken")
    with pytest.raises(InvalidInputError):
        add_job(storage, "taken", state="bogus")  # type: ignore[arg-type]
    with pytest.raises(JobExistsError):
        add_job(storage, "taken")


def test_job_changes_are_checked_as_a_definition_checks_them(storage: Storage) -> None:
    add_job(storage, "j")
    with pytest.raises(InvalidPolicyError):
        storage.update_job("j", {"max_instances": 0}, now=T0)
    with pytest.raises(InvalidKwargsError):
        storage.update_job("j", {"kwargs": {"pair": (1, 2)}}, now=T0)
    with pytest.raises(InvalidInputError):
        storage.update_job("j", {"state": "bogus"}, now=T0)
    assert storage.get_job("j").version == 1
    assert storage.update_job("j", {"state": "paused"}, now=T0).state is JobState.PAUSED


def test_add_execution_checks_the_new_row_before_the_job(storage: Storage) -> None:
    job = add_job(storage, "j")
    storage.delete_job("j", now=T0)
    with pytest.raises(InvalidInputError):
        storage.add_execution(new_execution(job, status="bogus"))  # type: ignore[arg-type]


def test_an_execution_id_already_stored_makes_its_advance_lose(storage: Storage) -> None:
    job = add_job(storage, "j", next_run_at=T0)
    manual = storage.add_execution(new_execution(job, scheduled_for=T0 - MINUTE))
    with pytest.raises(ConflictError):
        storage.add_execution(new_execution(job, id=manual.id, scheduled_for=T0 + MINUTE))

    def reuse(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        moved = advance(due, now=batch.now)
        return ClaimPlan(
            advances=[replace(moved, executions=[replace(moved.executions[0], id=manual.id)])]
        )

    assert storage.claim(now=T0, owner="o", limit=10, planner=Recorder(reuse)) == []
    assert storage.get_job("j").next_run_at == T0
    assert storage.get_execution(manual.id) == manual


def test_an_execution_id_twice_in_one_advance_makes_it_lose(storage: Storage) -> None:
    add_job(storage, "j", next_run_at=T0)

    def twice(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        moved = advance(due, slots=[T0, T0 + timedelta(seconds=1)], now=batch.now)
        first, second = moved.executions
        return ClaimPlan(
            advances=[replace(moved, executions=[first, replace(second, id=first.id)])]
        )

    assert storage.claim(now=T0, owner="o", limit=10, planner=Recorder(twice)) == []
    assert storage.get_job("j").next_run_at == T0
    assert storage.list_executions(ALL, limit=10) == []


@pytest.mark.parametrize(("message", "kept"), [(None, "why"), ("", ""), ("new", "new")])
def test_a_decision_message_replaces_the_old_one_unless_none(
    storage: Storage, message: str | None, kept: str
) -> None:
    job = add_job(storage, "j", next_run_at=None)
    pending = storage.add_execution(new_execution(job, error_message="why"))

    def cancel(batch):  # type: ignore[no-untyped-def]
        return ClaimPlan(
            pending=[PendingDecision(pending.id, ExecutionStatus.CANCELLED, error_message=message)]
        )

    storage.claim(now=T0, owner="o", limit=10, planner=Recorder(cancel))
    assert storage.get_execution(pending.id).error_message == kept


def test_an_outcome_must_end_the_run(storage: Storage) -> None:
    job = add_job(storage, "j")
    run = storage.add_execution(running(job, "o"))
    for status in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING, "bogus"):
        with pytest.raises(InvalidInputError):
            storage.record_outcomes([outcome(run, "o", status=status)])  # type: ignore[arg-type]
    assert storage.record_outcomes([outcome(run, "o", status="failed")]) == [True]  # type: ignore[arg-type]
    assert storage.get_execution(run.id).status is ExecutionStatus.FAILED


def test_a_failed_call_writes_nothing(storage: Storage) -> None:
    job = add_job(storage, "j")
    first = storage.add_execution(running(job, "o", scheduled_for=T0))
    second = storage.add_execution(running(job, "o", scheduled_for=T0 + MINUTE))
    bad_retry = new_execution(job, scheduled_for=T0 + MINUTE, attempt=2, status="bogus")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        storage.record_outcomes([outcome(first, "o"), outcome(second, "o", retry=bad_retry)])
    assert storage.get_execution(first.id).status is ExecutionStatus.RUNNING
    assert len(storage.list_executions(ALL, limit=10)) == 2


def test_ties_are_broken_by_id(storage: Storage) -> None:
    job = add_job(storage, "j")
    ids = [_uuid(n) for n in (3, 1, 2)]
    for n, execution_id in enumerate(ids):
        storage.add_execution(
            new_execution(
                job,
                id=execution_id,
                scheduled_for=T0 + n * MINUTE,
                status=ExecutionStatus.SUCCESS,
                completed_at=T0,
            )
        )
    # history: newest first, equal created_at: the greater id first; keyset after it
    listed = [e.id for e in storage.list_executions(ALL, limit=10)]
    assert listed == sorted(ids, reverse=True)
    after = storage.list_executions(ALL, limit=10, before=(T0, listed[0]))
    assert [e.id for e in after] == listed[1:]
    # retention: oldest first, equal completed_at: the lower id first
    assert storage.delete_finished_executions(completed_before=T0 + MINUTE, limit=1) == 1
    assert sorted(e.id for e in storage.list_executions(ALL, limit=10)) == sorted(ids)[1:]
    # instances: newest started_at first, equal ones: the greater id first
    for instance_id in ("i-b", "I-c", "i-a"):
        storage.register_instance(instance(instance_id))
    assert [i.id for i in storage.list_instances()] == ["i-b", "i-a", "I-c"]


def test_definition_must_be_a_job_definition(storage: Storage) -> None:
    with pytest.raises(InvalidInputError):
        storage.add_job(
            {"key": "x"},  # type: ignore[arg-type]
            source=JobSource.API,
            state=JobState.ACTIVE,
            next_run_at=None,
            fingerprint=None,
            now=T0,
        )
    assert storage.list_jobs() == []


def test_a_taken_key_or_execution_id_is_the_same_error_everywhere(storage: Storage) -> None:
    job = add_job(storage, "j")
    with pytest.raises(JobExistsError) as exists:
        add_job(storage, "j")
    assert "'j'" in str(exists.value)
    slot = ExecutionTrigger.SCHEDULE
    first = storage.add_execution(
        new_execution(job, scheduled_for=T0, trigger=slot, idempotency_key="k")
    )
    by_id = new_execution(job, id=first.id, scheduled_for=T0 + MINUTE)
    by_slot = new_execution(job, scheduled_for=T0, trigger=ExecutionTrigger.CATCHUP)
    by_attempt = new_execution(job, chain_id=first.id, scheduled_for=T0 + MINUTE)
    by_key = new_execution(job, scheduled_for=T0 + MINUTE, idempotency_key="k")
    for clash in (by_id, by_slot, by_attempt, by_key):
        with pytest.raises(ConflictError) as conflict:
            storage.add_execution(clash)
        # exactly a ConflictError (not a subclass), naming the row it refused
        assert type(conflict.value) is ConflictError
        assert repr(clash.id) in str(conflict.value)
        assert "already exists" in str(conflict.value)
    assert storage.list_executions(ALL, limit=10) == [first]


def test_runs_that_are_not_slots_of_a_schedule_may_share_an_instant(storage: Storage) -> None:
    job = add_job(storage, "j")
    scheduled = storage.add_execution(
        new_execution(job, scheduled_for=T0, trigger=ExecutionTrigger.SCHEDULE)
    )
    manual = [storage.add_execution(new_execution(job, scheduled_for=T0)) for _ in range(3)]
    retry = storage.add_execution(
        new_execution(
            job,
            scheduled_for=T0,
            attempt=2,
            chain_id=scheduled.id,
            trigger=ExecutionTrigger.RETRY,
        )
    )
    other_job = add_job(storage, "other")
    same_key = [
        storage.add_execution(new_execution(j, scheduled_for=T0, idempotency_key="k"))
        for j in (job, other_job)
    ]
    assert [e.chain_id for e in manual] == [e.id for e in manual]
    assert retry.chain_id == scheduled.id
    assert scheduled.chain_id == scheduled.id
    assert len(storage.list_executions(ALL, limit=20)) == 7
    assert {e.idempotency_key for e in same_key} == {"k"}


@pytest.mark.parametrize("status", list(ExecutionStatus))
@pytest.mark.parametrize("queued", [False, True])
def test_active_runs_are_the_rule_s_active_runs(
    storage: Storage, status: ExecutionStatus, queued: bool
) -> None:
    job = add_job(storage, "j", next_run_at=T0)
    storage.add_execution(
        new_execution(
            job,
            status=status,
            queued=queued,
            due_at=T0 + MINUTE,  # not due: only counted
            owner="o" if status is ExecutionStatus.RUNNING else None,
            completed_at=T0 if status.is_final else None,
        )
    )
    counted = int(is_active_run(status, queued))
    planner = Recorder()
    storage.claim(now=T0, owner="o", limit=10, planner=planner)
    assert planner.batch.active == {job.id: counted}
    again = new_execution(job, scheduled_for=T0 + MINUTE)
    if counted:
        with pytest.raises(JobBusyError):
            storage.add_execution(again, max_active=1)
    else:
        storage.add_execution(again, max_active=1)


def test_a_claim_reads_ties_in_insertion_order(storage: Storage, backend: str) -> None:
    jobs = [add_job(storage, key, next_run_at=T0) for key in ("c", "a", "b")]
    ids = [_uuid(n) for n in (3, 1, 2)]  # neither by key nor by id
    for job, execution_id in zip(jobs, ids, strict=True):
        storage.add_execution(
            new_execution(job, id=execution_id, scheduled_for=T0 - MINUTE, due_at=T0)
        )
    for limit in (10, 2):
        planner = Recorder()
        storage.claim(now=T0, owner="o", limit=limit, planner=planner)
        due_jobs = [j.key for j in planner.batch.due_jobs]
        due_pending = [e.id for e in planner.batch.due_pending]
        if backend == "postgres":  # the index's order: not promised (see ClaimBatch)
            assert len(due_jobs) == len(due_pending) == min(limit, 3)
        else:
            assert due_jobs == ["c", "a", "b"][:limit]  # by id: the order they were added
            assert due_pending == ids[:limit]


def test_a_plan_may_give_enums_as_their_values(storage: Storage) -> None:
    job = add_job(storage, "j", next_run_at=T0)
    start = storage.add_execution(new_execution(job, scheduled_for=T0 - MINUTE))
    cancel = storage.add_execution(new_execution(job, scheduled_for=T0 - 2 * MINUTE))

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        moved = advance(due, now=batch.now)
        row = replace(moved.executions[0], status="running", trigger="schedule")
        return ClaimPlan(
            advances=[replace(moved, executions=[row])],
            pending=[PendingDecision(start.id, "running"), PendingDecision(cancel.id, "cancelled")],  # type: ignore[arg-type]
        )

    claimed = storage.claim(now=T0, owner="o", limit=10, planner=Recorder(plan))
    # a value is the member: "running" starts the run, for this owner
    assert [(c.execution.status, c.execution.owner) for c in claimed] == [
        (ExecutionStatus.RUNNING, "o")
    ] * 2
    assert claimed[1].execution.id == start.id
    for c in claimed:
        assert storage.get_execution(c.execution.id) == c.execution
        assert c.execution.trigger in (ExecutionTrigger.SCHEDULE, ExecutionTrigger.MANUAL)
    assert storage.get_execution(start.id).completed_at is None
    assert storage.get_execution(cancel.id).status is ExecutionStatus.CANCELLED


_BAD_PLANS = {
    "decision status": lambda moved, pending: ([moved], [PendingDecision(pending.id, "bogus")]),
    "decision to pending": lambda moved, pending: (
        [moved],
        [PendingDecision(pending.id, ExecutionStatus.PENDING)],
    ),
    "row status": lambda moved, pending: (
        [replace(moved, executions=[replace(moved.executions[0], status="bogus")])],
        [],
    ),
    "naive row": lambda moved, pending: (
        [replace(moved, executions=[replace(moved.executions[0], scheduled_for=NAIVE)])],
        [],
    ),
    "naive next run": lambda moved, pending: ([replace(moved, next_run_at=NAIVE)], []),
    # refused even though its compare-and-set would lose (it expects a stale next_run_at)
    "losing advance": lambda moved, pending: (
        [
            moved,
            replace(
                moved,
                expected_next_run_at=T0 - MINUTE,
                executions=[replace(moved.executions[0], trigger="bogus")],
            ),
        ],
        [],
    ),
}


@pytest.mark.parametrize("bad", list(_BAD_PLANS))
def test_a_bad_plan_is_refused_whole(storage: Storage, bad: str) -> None:
    job = add_job(storage, "j", next_run_at=T0)
    pending = storage.add_execution(new_execution(job, scheduled_for=T0 - MINUTE))

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        advances, decisions = _BAD_PLANS[bad](advance(due, now=batch.now), pending)
        return ClaimPlan(advances=advances, pending=decisions)

    expected = InvalidDatetimeError if bad.startswith("naive") else InvalidInputError
    with pytest.raises(expected):
        storage.claim(now=T0, owner="o", limit=10, planner=Recorder(plan))
    assert storage.get_job("j").next_run_at == T0
    assert storage.list_executions(ALL, limit=10) == [pending]


def test_an_advance_lost_to_a_conflict_leaves_its_job_for_the_next(storage: Storage) -> None:
    job = add_job(storage, "j", next_run_at=T0)
    storage.add_execution(
        new_execution(job, scheduled_for=T0, trigger=ExecutionTrigger.SCHEDULE)
    )  # the slot T0 is taken

    def plan(batch):  # type: ignore[no-untyped-def]
        [due] = batch.due_jobs
        clashes = advance(due, now=batch.now)
        free = advance(due, slots=[T0 + timedelta(seconds=30)], now=batch.now)
        return ClaimPlan(advances=[clashes, free])

    claimed = storage.claim(now=T0, owner="o", limit=10, planner=Recorder(plan))
    assert [c.execution.scheduled_for for c in claimed] == [T0 + timedelta(seconds=30)]
    assert storage.get_job("j").next_run_at == T0 + timedelta(seconds=30) + MINUTE


def test_retention_checks_its_limit_and_statuses(storage: Storage) -> None:
    job = add_job(storage, "j")
    storage.add_execution(new_execution(job, status=ExecutionStatus.FAILED, completed_at=T0))
    later = T0 + MINUTE
    with pytest.raises(InvalidInputError):
        storage.delete_finished_executions(completed_before=later, limit=-1)
    with pytest.raises(InvalidInputError):
        storage.delete_finished_executions(completed_before=later, limit=5, statuses=["bogus"])  # type: ignore[list-item]
    assert storage.delete_finished_executions(completed_before=later, limit=0) == 0
    assert (
        storage.delete_finished_executions(
            completed_before=later,
            limit=5,
            statuses=["failed"],  # type: ignore[list-item]
        )
        == 1
    )


@pytest.mark.parametrize(
    ("filters", "before"),
    [
        pytest.param(ExecutionFilter(since=T0.replace(year=1)), None, id="since year 1"),
        pytest.param(ExecutionFilter(until=T0.replace(year=9999)), None, id="until year 9999"),
        pytest.param(
            ExecutionFilter(
                until=T0.replace(year=1, month=1, day=1, hour=0, tzinfo=timezone(MINUTE * 60))
            ),
            None,
            id="until before year 1 in UTC",
        ),
        pytest.param(ALL, (T0.replace(year=1969), "exec-1"), id="cursor 1969"),
        pytest.param(ALL, (T0.replace(year=9999), "exec-1"), id="cursor 9999"),
    ],
)
def test_history_bounds_out_of_the_stored_range_are_refused_before_the_database(
    storage: Storage,
    filters: ExecutionFilter,
    before: tuple[datetime, str] | None,
) -> None:
    with pytest.raises(InvalidDatetimeError):
        storage.list_executions(filters, limit=10, before=before)


@pytest.mark.parametrize("execution_id", ["", "a\x00b", "é", "a b", "x" * 65])
def test_a_cursor_id_that_no_execution_can_have_is_refused(
    storage: Storage, execution_id: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        storage.list_executions(ALL, limit=10, before=(T0, execution_id))
    assert raised.value.field == "before"
    assert not isinstance(raised.value, InvalidDatetimeError)


def test_history_bounds_at_the_edges_of_the_stored_range_are_accepted(storage: Storage) -> None:
    first = T0.replace(year=1970, month=1, day=1, hour=0, minute=0)
    last = T0.replace(year=9998, month=12, day=31, hour=23, minute=59)
    assert storage.list_executions(ExecutionFilter(since=first, until=last), limit=1) == []
    assert storage.list_executions(ALL, limit=1, before=(last, "exec-1")) == []
