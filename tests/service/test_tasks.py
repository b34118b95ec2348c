"""Tasks: ``@task`` declares a job without a schedule; ``defer`` asks for a run of any
job with arguments, now or later, at most once per idempotency key. A deferred run
lives as a scheduled one does (one row per attempt, retries in its chain); bad input
is refused before anything is written. On every storage backend."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmgr import (
    ConflictError,
    ExecutionNotFoundError,
    ExecutionStatus,
    ExecutionTrigger,
    InvalidDatetimeError,
    InvalidInputError,
    InvalidKwargsError,
    InvalidPolicyError,
    JobNotFoundError,
    JobPausedError,
    Manual,
    OverlapPolicy,
    TaskmgrSettings,
    scheduled_job,
    task,
)
from taskmgr.service import SchedulerService
from taskmgr.storage import Storage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CALLS: list[dict[str, Any]] = []


@task("emails.welcome", max_retries=1, retry_backoff=(1.0, 1.0, 0.0))
def welcome(user_id: int, greeting: str = "hello") -> dict[str, Any]:
    CALLS.append({"user_id": user_id, "greeting": greeting})
    if greeting == "fail-once" and sum(c["greeting"] == "fail-once" for c in CALLS) == 1:
        raise RuntimeError("smtp down")
    return {"sent_to": user_id}


@task("reports.build", concurrency=1)
def build_report(customer: str) -> str:
    CALLS.append({"customer": customer})
    return customer


@scheduled_job("hourly", cron="0 * * * *")
def hourly(note: str = "") -> None:
    CALLS.append({"note": note})


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(storage: Storage, clock: FakeClock) -> SchedulerService:
    with make_test_service([welcome, build_report, hourly], clock=clock, storage=storage) as svc:
        yield svc


def stored(service: SchedulerService) -> list[Any]:
    return service.list_executions(limit=500).items


def run_all(service: SchedulerService) -> list[Any]:
    """Everything due, claim after claim (each takes what the dispatcher has room for)."""
    done: list[Any] = []
    while batch := service.run_due():
        done += batch
    return done


def test_a_task_is_a_job_without_a_schedule(service: SchedulerService, clock: FakeClock) -> None:
    job = service.get_job("emails.welcome")
    assert isinstance(job.trigger, Manual)
    assert job.next_run_at is None
    clock.advance(days=2)
    ran = service.run_due()
    assert ran and {e.job_key for e in ran} == {"hourly"}  # the schedule fires, the task not
    assert service.list_executions(job_key="emails.welcome").items == []


def test_deferred_with_arguments_runs_once_with_them(service: SchedulerService) -> None:
    pending = service.defer("emails.welcome", user_id=42, actor="signup")
    assert pending.status is ExecutionStatus.PENDING
    assert pending.trigger is ExecutionTrigger.DEFERRED
    assert pending.kwargs == {"user_id": 42}
    assert pending.chain_id == pending.id
    [done] = service.run_due()
    assert done.id == pending.id
    assert done.status is ExecutionStatus.SUCCESS
    assert done.result_summary == {"sent_to": 42}
    assert done.actor == "signup"
    assert CALLS == [{"user_id": 42, "greeting": "hello"}]
    assert service.run_due() == []


def test_the_declared_function_stands_for_its_task(service: SchedulerService) -> None:
    execution = service.defer(welcome, user_id=1)
    assert execution.job_key == "emails.welcome"


def test_many_deferred_runs_of_one_task_run_together(service: SchedulerService) -> None:
    executions = [service.defer(welcome, user_id=i) for i in range(20)]
    assert len({e.scheduled_for for e in executions}) == 1  # one instant, 20 runs
    done = run_all(service)
    assert sorted(e.kwargs["user_id"] for e in done) == list(range(20))
    assert {e.status for e in done} == {ExecutionStatus.SUCCESS}


def test_run_at_and_delay_hold_a_run_until_its_time(
    service: SchedulerService, clock: FakeClock
) -> None:
    later = service.defer(welcome, run_at=START + timedelta(minutes=5), user_id=1)
    delayed = service.defer(welcome, delay=60, user_id=2)
    past = service.defer(welcome, run_at=START - timedelta(days=1), user_id=3)
    assert delayed.due_at == START + timedelta(seconds=60)
    assert past.due_at == START  # a time already past means now
    assert [e.id for e in service.run_due()] == [past.id]
    clock.advance(seconds=60)
    assert [e.id for e in service.run_due()] == [delayed.id]
    clock.advance(minutes=4)
    assert [e.id for e in service.run_due()] == [later.id]


def test_concurrency_bounds_the_runs_of_a_task(service: SchedulerService) -> None:
    for customer in ("a", "b", "c"):
        service.defer(build_report, customer=customer)
    started = [service.run_due() for _ in range(4)]
    assert [len(batch) for batch in started] == [1, 1, 1, 0]  # one at a time, none lost
    assert [c["customer"] for c in CALLS] == ["a", "b", "c"]


def test_one_idempotency_key_is_one_run(service: SchedulerService) -> None:
    first = service.defer(welcome, idempotency_key="signup-42", user_id=42)
    again = service.defer(welcome, idempotency_key="signup-42", user_id=42)
    assert again.id == first.id
    service.run_due()
    after = service.defer(welcome, idempotency_key="signup-42", user_id=42)
    assert after.id == first.id
    assert after.status is ExecutionStatus.SUCCESS  # the run it stands for, as it ended
    other_task = service.defer(build_report, idempotency_key="signup-42", customer="x")
    assert other_task.id != first.id
    assert len(CALLS) == 1 + 0  # the report has not run yet
    assert len(stored(service)) == 2


def test_a_failed_deferred_run_is_retried_in_its_chain(
    service: SchedulerService, clock: FakeClock
) -> None:
    first = service.defer(welcome, user_id=7, greeting="fail-once")
    [failed] = service.run_due()
    assert failed.status is ExecutionStatus.FAILED
    clock.advance(seconds=1)
    [retried] = service.run_due()
    assert retried.status is ExecutionStatus.SUCCESS
    assert retried.attempt == 2
    assert retried.chain_id == first.id
    assert retried.trigger is ExecutionTrigger.RETRY


def test_defer_many_writes_all_in_one_call(service: SchedulerService) -> None:
    executions = service.defer_many(welcome, [{"user_id": i} for i in range(50)], actor="batch")
    assert [e.kwargs["user_id"] for e in executions] == list(range(50))
    assert len(stored(service)) == 50
    assert len(run_all(service)) == 50
    assert service.defer_many(welcome, []) == []


def test_defer_many_writes_nothing_when_one_run_is_refused(service: SchedulerService) -> None:
    with pytest.raises(InvalidKwargsError) as refused:
        service.defer_many(welcome, [{"user_id": 1}, {"user_id": 2, "colour": "red"}])
    assert "colour" in str(refused.value)
    with pytest.raises(InvalidInputError) as not_a_mapping:
        service.defer_many(welcome, [{"user_id": 1}, 5])  # type: ignore[list-item]
    assert not_a_mapping.value.field == "kwargs_list[1]"
    assert stored(service) == []


def test_every_job_can_be_deferred_and_a_run_is_not_a_slot(
    service: SchedulerService, clock: FakeClock
) -> None:
    a = service.defer("hourly", note="a")
    b = service.defer("hourly", note="b")
    manual = [service.trigger_job("emails.welcome", kwargs={"user_id": i}) for i in (1, 2)]
    # the clock does not move: runs asked for at one instant share it, no nudging
    assert a.scheduled_for == b.scheduled_for == manual[0].scheduled_for == START
    assert manual[0].scheduled_for == manual[1].scheduled_for
    # the scheduled job's overlap policy (skip) makes a deferred run wait, never skip it
    assert a.queued and b.queued
    ran = service.run_due()
    assert {e.kwargs.get("note") for e in ran if e.job_key == "hourly"} == {"a"}
    assert len(service.run_due()) == 1  # b, once a ended


def test_create_job_without_a_trigger_makes_a_task(service: SchedulerService) -> None:
    job = service.create_job("adhoc.welcome", welcome)
    assert isinstance(job.trigger, Manual)
    assert job.next_run_at is None
    # as @task() does, it starts every due run: none waits for another to end
    assert job.overlap_policy is OverlapPolicy.ALLOW
    service.defer_many("adhoc.welcome", [{"user_id": 5}, {"user_id": 6}, {"user_id": 7}])
    assert [e.status for e in service.run_due()] == [ExecutionStatus.SUCCESS] * 3
    bounded = service.create_job("adhoc.bounded", welcome, max_instances=2)
    assert bounded.overlap_policy is not OverlapPolicy.ALLOW


def test_a_paused_task_refuses_defers_and_runs_those_already_asked_for(
    service: SchedulerService,
) -> None:
    asked = service.defer(welcome, user_id=1)
    service.pause_job("emails.welcome")
    with pytest.raises(JobPausedError):
        service.defer(welcome, user_id=2)
    assert [e.id for e in service.run_due()] == [asked.id]
    assert len(stored(service)) == 1


def test_a_task_changed_elsewhere_is_deferred_as_it_is_now(
    storage: Storage, clock: FakeClock
) -> None:
    """A service remembers the task it last deferred to; a change made by another
    process (a pause, new default arguments, a delete and re-create) is never missed."""
    with (
        make_test_service([welcome], clock=clock, storage=storage) as ours,
        make_test_service([welcome], clock=clock, storage=storage) as theirs,
    ):
        ours.defer(welcome, user_id=1)
        theirs.pause_job("emails.welcome")
        with pytest.raises(JobPausedError):
            ours.defer(welcome, user_id=2)
        theirs.resume_job("emails.welcome")
        theirs.update_job("emails.welcome", kwargs={"greeting": "hi"})
        assert ours.defer(welcome, user_id=3).kwargs == {"user_id": 3, "greeting": "hi"}
        theirs.delete_job("emails.welcome")
        with pytest.raises(JobNotFoundError):
            ours.defer(welcome, user_id=4)
        again = theirs.create_job("emails.welcome", welcome)
        assert ours.defer(welcome, user_id=5).job_id == again.id
        assert sorted(e.kwargs["user_id"] for e in stored(ours)) == [1, 3, 5]


def test_a_job_changed_elsewhere_is_triggered_as_it_is_now(
    storage: Storage, clock: FakeClock
) -> None:
    """``trigger_job`` remembers the job as ``defer`` does: one transaction a trigger,
    and a change made by another process is never missed."""
    with (
        make_test_service([hourly], clock=clock, storage=storage) as ours,
        make_test_service([hourly], clock=clock, storage=storage) as theirs,
    ):
        ours.trigger_job("hourly")
        run_all(ours)  # one run at a time (max_instances=1)
        theirs.pause_job("hourly")
        with pytest.raises(JobPausedError):
            ours.trigger_job("hourly")
        ours.trigger_job("hourly", force=True)  # remembers the paused job
        run_all(ours)
        theirs.resume_job("hourly")
        assert ours.trigger_job("hourly").status is ExecutionStatus.PENDING
        run_all(ours)
        theirs.update_job("hourly", kwargs={"note": "new"})
        assert ours.trigger_job("hourly").kwargs == {"note": "new"}
        run_all(ours)
        theirs.delete_job("hourly")
        with pytest.raises(JobNotFoundError):
            ours.trigger_job("hourly")
        assert [c["note"] for c in CALLS] == ["", "", "", "new"]


def test_a_remembered_job_is_not_read_again(
    service: SchedulerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.defer(welcome, user_id=1)
    service.trigger_job("hourly")
    run_all(service)
    reads: list[str] = []
    read = service.storage.get_job
    monkeypatch.setattr(service.storage, "get_job", lambda key: reads.append(key) or read(key))
    service.defer(welcome, user_id=2)
    service.trigger_job("hourly", kwargs={"note": "again"})
    assert reads == []
    assert len(stored(service)) == 4


NOT_JSON: list[tuple[dict[str, Any], str]] = [
    ({"user_id": b"42"}, "kwargs.user_id"),
    ({"user_id": START}, "kwargs.user_id"),
    ({"user_id": math.nan}, "kwargs.user_id"),
    ({"user_id": {1, 2}}, "kwargs.user_id"),
    ({"user_id": 1, "greeting": ["ok", {"deep": (1, 2)}]}, "kwargs.greeting[1].deep"),
]


@pytest.mark.parametrize(("kwargs", "path"), NOT_JSON)
def test_arguments_that_are_not_json_are_refused_with_their_path(
    service: SchedulerService, kwargs: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidKwargsError) as refused:
        service.defer(welcome, **kwargs)
    assert refused.value.field == path
    assert stored(service) == []


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"user_id": 1, "colour": "red"}, InvalidKwargsError, "signature"),
    ({}, InvalidKwargsError, "user_id"),
    ({"user_id": 1, "run_at": datetime(2026, 3, 2, 9)}, InvalidDatetimeError, "naive"),
    ({"user_id": 1, "run_at": START, "delay": 1}, InvalidInputError, "not both"),
    ({"user_id": 1, "delay": -1}, InvalidInputError, "delay"),
    ({"user_id": 1, "delay": "soon"}, InvalidInputError, "seconds"),
    ({"user_id": 1, "idempotency_key": ""}, InvalidInputError, "non-empty"),
    ({"user_id": 1, "idempotency_key": "k" * 256}, InvalidInputError, "255"),
    ({"user_id": 1, "idempotency_key": 42}, InvalidInputError, "string"),
    ({"user_id": 1, "actor": "a" * 201}, InvalidInputError, "200"),
]


@pytest.mark.parametrize(("arguments", "error", "message"), BAD)
def test_bad_input_is_refused_and_nothing_is_stored(
    service: SchedulerService, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        service.defer(welcome, **arguments)
    assert stored(service) == []


def test_an_unknown_task_is_not_found(service: SchedulerService) -> None:
    with pytest.raises(JobNotFoundError):
        service.defer("emails.nope", user_id=1)
    with pytest.raises(InvalidInputError, match="neither a task key"):
        service.defer(print, user_id=1)


def test_arguments_above_the_size_limit_are_refused(storage: Storage, clock: FakeClock) -> None:
    settings = TaskmgrSettings(max_kwargs_bytes=100)
    with make_test_service([welcome], clock=clock, storage=storage, settings=settings) as svc:
        svc.defer(welcome, user_id=1, greeting="x" * 50)
        with pytest.raises(InvalidKwargsError, match="exceeds 100 bytes"):
            svc.defer(welcome, user_id=1, greeting="x" * 100)
        assert len(svc.list_executions().items) == 1


def test_task_declarations_are_checked() -> None:
    with pytest.raises(InvalidPolicyError) as bad:
        task("t", concurrency=0)
    assert bad.value.field == "concurrency"
    with pytest.raises(InvalidPolicyError):
        task("t", concurrency=True)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="parentheses"):
        task(welcome)  # type: ignore[arg-type]


def test_a_pending_run_can_be_cancelled_once(service: SchedulerService) -> None:
    later = service.defer(welcome, delay=60, user_id=1)
    cancelled = service.cancel_execution(later.id, actor="ops")
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.error_message == "cancelled by ops"
    assert cancelled.completed_at == START
    assert service.get_execution(later.id) == cancelled
    with pytest.raises(ConflictError, match="only a pending one"):
        service.cancel_execution(later.id)
    done = service.defer(welcome, user_id=2)
    service.run_due()
    with pytest.raises(ConflictError, match="is success"):
        service.cancel_execution(done.id)
    with pytest.raises(ExecutionNotFoundError):
        service.cancel_execution("no-such-id")


def test_wait_returns_the_ended_run(service: SchedulerService) -> None:
    deferred = service.defer(welcome, user_id=3)
    service.run_due()
    ended = service.wait(deferred.id, timeout=5)
    assert ended.status is ExecutionStatus.SUCCESS
    assert ended.result_summary == {"sent_to": 3}


def test_wait_gives_up_after_its_timeout(service: SchedulerService) -> None:
    pending = service.defer(welcome, delay=600, user_id=4)
    with pytest.raises(TimeoutError, match="still pending"):
        service.wait(pending.id, timeout=0.01)
    with pytest.raises(InvalidInputError):
        service.wait(pending.id, timeout=-1)
    with pytest.raises(ExecutionNotFoundError):
        service.wait("no-such-id", timeout=1)


def test_wait_ends_when_the_run_ends(service: SchedulerService) -> None:
    deferred = service.defer(welcome, user_id=5)
    result: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: result.update(e=service.wait(deferred.id, timeout=60)))
    waiter.start()
    service.run_due()
    waiter.join(60)
    assert result["e"].status is ExecutionStatus.SUCCESS
