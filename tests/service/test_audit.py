"""The audit log through the service: every command records who, when (the service's
clock) and through which door; code sync records source ``code``; ``list_audit`` pages
and filters; the retention run keeps each job's history its own retention and the log
its ``audit_days``, and records what it removed. Bad input is refused, nothing stored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmgr import (
    AsyncSchedulerService,
    AuditAction,
    AuditSource,
    ExecutionStatus,
    InvalidDatetimeError,
    InvalidInputError,
    InvalidPolicyError,
    SchedulerService,
    scheduled_job,
    task,
)
from taskmgr.scheduling.retention import RETENTION_KEY
from taskmgr.storage import MemoryStorage
from taskmgr.storage.base import ExecutionFilter
from taskmgr.testing import FakeClock, make_test_service
from tests.contract.helpers import new_execution

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@scheduled_job("audit.tick", interval=60, retention=timedelta(days=3))
def tick() -> None:
    return None


@scheduled_job("audit.tick", interval=120)  # the same job, changed in code
def tick_v2() -> None:
    return None


def spare() -> None:  # never declared: the declarations refused below leave it so
    return None


def work(n: int = 0) -> int:
    return n


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(clock: FakeClock) -> Iterator[SchedulerService]:
    made = make_test_service([work], clock=clock)
    yield made
    made.close()


def actions(service: SchedulerService, **filters: Any) -> list[str]:
    return [e.action.value for e in service.list_audit(limit=500, **filters).items]


def test_each_command_records_who_when_and_through_which_door(
    service: SchedulerService, clock: FakeClock
) -> None:
    service.create_job("j", work, interval=60, actor="alice", source="api", max_retries=1)
    clock.advance(60)
    service.update_job("j", max_retries=3, retention=86400, actor="bob", source=AuditSource.CLI)
    service.update_job("j", max_retries=3, actor="bob")  # no change: nothing recorded
    service.pause_job("j", actor="carol", source="dashboard")
    service.pause_job("j", actor="carol")  # already paused: nothing recorded
    run = service.trigger_job("j", actor="dave", force=True)
    service.cancel_execution(run.id, actor="erin")
    service.resume_job("j")
    service.delete_job("j", actor="frank", source="api")

    page = service.list_audit()
    assert [e.action for e in page.items] == [
        "delete",
        "resume",
        "cancel",
        "trigger",
        "pause",
        "update",
        "create",
    ]
    delete, resume, cancel, trigger, pause, update, create = page.items
    assert (create.actor, create.source, create.at) == ("alice", "api", START)
    assert create.details["job"]["max_retries"] == 1
    assert update.at == START + timedelta(seconds=60)
    assert (update.actor, update.source) == ("bob", "cli")
    assert update.details == {
        "changes": {
            "max_retries": {"before": 1, "after": 3},
            "retention": {"before": None, "after": 86400.0},
        }
    }
    assert pause.details["changes"]["state"] == {"before": "active", "after": "paused"}
    assert (pause.actor, pause.source) == ("carol", "dashboard")
    assert (trigger.execution_id, trigger.actor, trigger.details) == (
        run.id,
        "dave",
        {"force": True},
    )
    assert (cancel.execution_id, cancel.actor) == (run.id, "erin")
    assert (resume.actor, resume.source) == (None, "python")  # the default door
    assert delete.details["job"]["retention"] == 86400.0
    assert all(e.job_key == "j" for e in page.items)


def test_the_log_is_paged_and_filtered(service: SchedulerService, clock: FakeClock) -> None:
    for n in range(5):
        service.create_job(f"j{n}", work, actor=f"user{n}")
        clock.advance(60)
    first = service.list_audit(limit=2)
    second = service.list_audit(limit=2, cursor=first.next_cursor)
    third = service.list_audit(limit=2, cursor=second.next_cursor)
    assert [e.job_key for e in first.items + second.items + third.items] == [
        "j4",
        "j3",
        "j2",
        "j1",
        "j0",
    ]
    assert third.next_cursor is None
    assert actions(service, job_key="j2") == ["create"]
    assert actions(service, action="update") == []
    assert len(service.list_audit(action=["create", AuditAction.DELETE]).items) == 5
    window = service.list_audit(
        since=START + timedelta(seconds=60), until=START + timedelta(seconds=120)
    )
    assert [e.job_key for e in window.items] == ["j2", "j1"]
    again = asyncio.run(AsyncSchedulerService(service).list_audit(job_key="j0"))
    assert [e.actor for e in again.items] == ["user0"]


def test_code_sync_is_recorded_with_source_code(clock: FakeClock) -> None:
    storage = MemoryStorage()
    first = make_test_service([tick], clock=clock, storage=storage)
    first.start()
    first.shutdown()
    second = make_test_service([tick_v2], clock=clock, storage=storage)
    second.start()
    second.shutdown()
    without = make_test_service([], clock=clock, storage=storage)
    without.start()
    without.shutdown()

    entries = without.list_audit(job_key="audit.tick").items
    assert [(e.action, e.source, e.actor) for e in entries] == [("update", "code", None)] * 2 + [
        ("create", "code", None)
    ]
    orphaned, updated, created = entries
    assert created.details["job"]["retention"] == 3 * 86400.0
    assert set(updated.details["changes"]) == {"func", "trigger", "next_run_at", "retention"}
    assert orphaned.details["changes"]["state"] == {"before": "active", "after": "orphaned"}


def test_bad_input_is_refused_and_nothing_is_stored(service: SchedulerService) -> None:
    with pytest.raises(InvalidInputError, match="actor"):
        service.create_job("j", work, actor="x" * 201)
    with pytest.raises(InvalidInputError, match="source"):
        service.create_job("j", work, source="carrier-pigeon")
    for bad in (0, -1, timedelta(seconds=-5), float("inf"), "1 day", True):
        with pytest.raises(InvalidPolicyError, match="retention"):
            service.create_job("j", work, retention=bad)
    assert service.list_jobs() == []
    service.create_job("j", work, retention=timedelta(hours=1))
    with pytest.raises(InvalidPolicyError, match="retention"):
        service.update_job("j", retention=0)
    with pytest.raises(InvalidInputError, match="source"):
        service.pause_job("j", source="fax")
    job = service.get_job("j")
    assert (job.retention, job.version, job.state) == (3600.0, 1, "active")
    assert actions(service) == ["create"]
    with pytest.raises(InvalidPolicyError, match="retention"):
        scheduled_job("bad.retention", interval=60, retention=0)(spare)
    with pytest.raises(InvalidPolicyError, match="retention"):
        task("bad.task", retention=-1)(spare)

    with pytest.raises(InvalidInputError, match="action"):
        service.list_audit(action="rename")
    with pytest.raises(InvalidDatetimeError):
        service.list_audit(since=datetime(2026, 1, 1))  # naive
    for cursor in ("zzz", "", "YTA", "bm90IGEgY3Vyc29y"):
        with pytest.raises(InvalidInputError, match="cursor"):
            service.list_audit(cursor=cursor)
    for limit in (0, 501, True):
        with pytest.raises(InvalidInputError, match="limit"):
            service.list_audit(limit=limit)


def test_retention_keeps_each_job_its_own_history_and_the_log_its_days(
    clock: FakeClock,
) -> None:
    storage = MemoryStorage()
    service = make_test_service([work], clock=clock, storage=storage)
    service.set_retention(30, every=3600, audit_days=10)
    noisy = service.create_job("noisy", work, retention=timedelta(days=3))
    kept = service.create_job("kept", work, retention=timedelta(days=400))
    plain = service.create_job("plain", work)
    clock.advance(days=20)  # the creates' entries are now 20 days old
    now = clock.now()
    expected: dict[str, bool] = {}
    for job in (noisy, kept, plain):
        for age in (5, 40):
            at = now - timedelta(days=age)
            row = new_execution(
                job, status=ExecutionStatus.SUCCESS, completed_at=at, scheduled_for=at
            )
            storage.add_execution(row)
            expected[f"{job.key}-{age}"] = {"noisy": False, "kept": True, "plain": age < 30}[
                job.key
            ]
    service.update_job("kept", description="recent", actor="alice")  # stays: 0 days old

    service.start()
    try:
        clock.advance(3600)
        [run] = service.run_due()
    finally:
        service.shutdown()

    assert run.job_key == RETENTION_KEY and run.status is ExecutionStatus.SUCCESS
    assert run.result_summary == {
        "deleted_by_job": 2,
        "deleted": 1,
        "deleted_failures": 0,
        "deleted_audit": 3,
        "deleted_incidents": 0,
        "complete": True,
    }
    left = storage.list_executions(ExecutionFilter(), limit=100)
    stayed = {
        f"{e.job_key}-{round((now - e.completed_at).days)}"
        for e in left
        if e.completed_at is not None and e.job_key != RETENTION_KEY
    }
    assert stayed == {name for name, keep in expected.items() if keep}
    entries = service.list_audit().items
    assert [(e.action, e.source) for e in entries] == [
        ("retention", "code"),
        ("create", "code"),  # the retention job, created at start
        ("update", "python"),
    ]
    assert entries[0].details == run.result_summary


def test_cleanup_history_is_recorded(service: SchedulerService) -> None:
    assert service.cleanup_history(7, actor="ops", source="cli") == 0
    [entry] = service.list_audit().items
    assert (entry.action, entry.actor, entry.source) == ("retention", "ops", "cli")
    assert entry.details == {"retention_days": 7, "deleted": 0}
    with pytest.raises(InvalidInputError, match="actor"):
        service.cleanup_history(7, actor="nul\x00")
    assert len(service.list_audit().items) == 1
