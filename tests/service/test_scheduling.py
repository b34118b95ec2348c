"""Scheduling rules of the service: misfires after a restart, coalescing, overlap
policies, manual runs, pause/resume, code sync and orphaned jobs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr import (
    ExecutionStatus,
    ExecutionTrigger,
    JobBusyError,
    JobOrphanedError,
    JobPausedError,
    JobSource,
    JobState,
    scheduled_job,
)
from taskmgr.storage import Storage
from taskmgr.storage.memory import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
KEY = f"{__name__}.every_minute"


@scheduled_job(interval=60, misfire_grace_time=150, coalesce=True)
def every_minute() -> None:
    pass


@scheduled_job(interval=60, misfire_grace_time=150, coalesce=False)
def every_minute_each() -> None:
    pass


GATE = threading.Event()


@scheduled_job(interval=60, max_instances=1)
def gated() -> None:
    GATE.wait(10)


def statuses(service: object, key: str) -> list[tuple[datetime, str, str]]:
    page = service.list_executions(job_key=key, limit=500)  # type: ignore[attr-defined]
    return sorted((e.scheduled_for, e.status.value, e.trigger.value) for e in page.items)


def drain(service: object) -> list[object]:
    """run_due() until nothing more is due at this instant."""
    ran: list[object] = []
    while batch := service.run_due():  # type: ignore[attr-defined]
        ran.extend(batch)
    return ran


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def test_restart_with_coalesce_runs_one_catch_up_and_records_the_rest(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([every_minute], clock=clock, storage=storage):
        pass  # creates the job: first slot at 09:01
    clock.advance(minutes=3, seconds=31)  # 09:03:31: slots 09:01, 09:02, 09:03 missed
    with make_test_service([every_minute], clock=clock, storage=storage) as service:
        [run] = service.run_due()
        assert run.status is ExecutionStatus.SUCCESS
        assert run.trigger is ExecutionTrigger.CATCHUP
        assert run.scheduled_for == START + timedelta(minutes=3)
        assert statuses(service, KEY) == [
            (START + timedelta(minutes=1), "missed", "schedule"),  # 150 s late: beyond grace
            (START + timedelta(minutes=2), "missed", "schedule"),  # coalesced
            (START + timedelta(minutes=3), "success", "catchup"),
        ]
        missed = service.list_executions(job_key=KEY, status="missed").items
        messages = sorted(e.error_message or "" for e in missed)
        assert "coalesced into the run of" in messages[0] or "coalesced" in messages[1]
        assert any("beyond the misfire grace time" in m for m in messages)
        assert service.get_job(KEY).next_run_at == START + timedelta(minutes=4)


def test_restart_without_coalesce_runs_each_slot_within_grace(
    clock: FakeClock, storage: Storage
) -> None:
    key = f"{__name__}.every_minute_each"
    with make_test_service([every_minute_each], clock=clock, storage=storage):
        pass
    clock.advance(minutes=3, seconds=31)
    with make_test_service([every_minute_each], clock=clock, storage=storage) as service:
        runs = drain(service)
        assert len(runs) == 2
        assert statuses(service, key) == [
            (START + timedelta(minutes=1), "missed", "schedule"),
            (START + timedelta(minutes=2), "success", "catchup"),
            (START + timedelta(minutes=3), "success", "catchup"),
        ]


def test_restart_within_grace_without_coalesce_runs_three(
    clock: FakeClock, storage: Storage
) -> None:
    key = f"{__name__}.every_minute_each"
    with make_test_service([every_minute_each], clock=clock, storage=storage):
        pass
    clock.advance(minutes=3, seconds=5)  # three slots, all within the 150 s grace
    with make_test_service([every_minute_each], clock=clock, storage=storage) as service:
        runs = drain(service)
        assert len(runs) == 3  # one after another: max_instances=1 holds for catch-ups
        assert [r.scheduled_for for r in runs] == [START + timedelta(minutes=m) for m in (1, 2, 3)]
        assert [s for _, s, _ in statuses(service, key)] == ["success"] * 3


def test_a_slot_is_claimed_once_even_when_ticked_twice(clock: FakeClock) -> None:
    with make_test_service([every_minute], clock=clock) as service:
        clock.advance(60)
        assert len(service.run_due()) == 1
        assert service.run_due() == []
        assert len(service.list_executions().items) == 1


def test_overlap_skip_records_a_skipped_slot(clock: FakeClock) -> None:
    GATE.clear()
    key = f"{__name__}.gated"
    with make_test_service([gated], clock=clock) as service:
        clock.advance(60)
        [first] = service.run_due(wait=False)
        clock.advance(60)
        assert service.run_due(wait=False) == []  # skipped, not started
        [skipped] = service.list_executions(job_key=key, status="skipped").items
        assert skipped.scheduled_for == START + timedelta(minutes=2)
        assert "max_instances=1" in (skipped.error_message or "")
        with pytest.raises(JobBusyError):
            service.trigger_job(key)
        forced = service.trigger_job(key, force=True, actor="ops@example.com")
        assert forced.status is ExecutionStatus.PENDING and forced.actor == "ops@example.com"
        [started] = service.run_due(wait=False)
        assert started.id == forced.id
        GATE.set()
    assert service.get_execution(first.id).status is ExecutionStatus.SUCCESS
    assert service.get_execution(forced.id).status is ExecutionStatus.SUCCESS


def test_overlap_queue_starts_the_slot_when_a_run_ends(clock: FakeClock) -> None:
    GATE.clear()
    with make_test_service(clock=clock) as service:
        job = service.create_job("queued", gated, interval=60, overlap_policy="queue")
        clock.advance(60)
        [first] = service.run_due(wait=False)
        clock.advance(60)
        assert service.run_due(wait=False) == []
        [waiting] = service.list_executions(job_key=job.key, status="pending").items
        assert waiting.queued
        GATE.set()
        deadline = threading.Event()
        while not service.get_execution(first.id).status.is_final:
            deadline.wait(0.01)
        [second] = service.run_due()
        assert second.id == waiting.id and second.status is ExecutionStatus.SUCCESS


def test_overlap_allow_starts_every_slot(clock: FakeClock) -> None:
    GATE.clear()
    with make_test_service(clock=clock) as service:
        service.create_job("allowed", gated, interval=60, overlap_policy="allow")
        clock.advance(60)
        assert len(service.run_due(wait=False)) == 1
        clock.advance(60)
        assert len(service.run_due(wait=False)) == 1
        GATE.set()


def test_manual_trigger_runs_with_merged_kwargs_and_actor(clock: FakeClock) -> None:
    with make_test_service(clock=clock) as service:
        service.create_job("manual", echo, interval=3600, kwargs={"a": 1, "b": 2})
        pending = service.trigger_job("manual", kwargs={"b": 3}, actor="alice")
        assert pending.trigger is ExecutionTrigger.MANUAL
        [done] = service.run_due()
        assert done.id == pending.id
        assert done.result_summary == {"a": 1, "b": 3}
        assert done.actor == "alice"


def echo(a: int, b: int) -> dict[str, int]:
    return {"a": a, "b": b}


def test_pause_stops_firing_and_resume_starts_from_now(clock: FakeClock) -> None:
    with make_test_service([every_minute], clock=clock) as service:
        paused = service.pause_job(KEY)
        assert paused.state is JobState.PAUSED
        clock.advance(minutes=10)
        assert service.run_due() == []
        with pytest.raises(JobPausedError):
            service.trigger_job(KEY)
        resumed = service.resume_job(KEY)
        assert resumed.state is JobState.ACTIVE
        assert resumed.next_run_at is not None and resumed.next_run_at > clock.now()
        assert service.run_due() == []  # no burst of the slots missed while paused
        clock.advance(60)
        assert len(service.run_due()) == 1
        assert service.list_executions(status="missed").items == []


def test_change_made_by_one_service_is_seen_by_another_on_its_next_tick(
    clock: FakeClock, storage: Storage
) -> None:
    first = make_test_service([every_minute], clock=clock, storage=storage)
    second = make_test_service([every_minute], clock=clock, storage=storage)
    with first, second:
        first.pause_job(KEY)
        clock.advance(60)
        assert second.run_due() == []
        first.resume_job(KEY)
        first.update_job(KEY, interval=30)
        clock.advance(30)
        [execution] = second.run_due()
        assert execution.scheduled_for == clock.now()


def test_code_sync_keeps_operator_changes_until_code_changes(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([every_minute], clock=clock, storage=storage) as service:
        service.update_job(KEY, max_retries=5, description="tuned by ops")
    with make_test_service([every_minute], clock=clock, storage=storage) as service:
        job = service.get_job(KEY)
        assert job.max_retries == 5 and job.description == "tuned by ops"  # kept
    with make_test_service([every_minute_v2], clock=clock, storage=storage) as service:
        job = service.get_job(KEY)
        assert job.max_retries == 0 and job.description is None  # code wins
        assert job.trigger.every == timedelta(seconds=120)  # type: ignore[union-attr]
        assert job.source is JobSource.CODE
        assert job.func == f"{__name__}.every_minute_v2"


@scheduled_job(KEY, interval=120)
def every_minute_v2() -> None:
    """The job of KEY, redeclared in code with another schedule."""


def test_vanished_code_job_becomes_orphaned_and_fires_nothing(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([every_minute], clock=clock, storage=storage):
        pass
    with make_test_service([], clock=clock, storage=storage) as service:
        [job] = service.list_jobs()
        assert job.key == KEY and job.state is JobState.ORPHANED
        clock.advance(minutes=5)
        assert service.run_due() == []
        assert service.list_executions().items == []
        with pytest.raises(JobOrphanedError):
            service.trigger_job(KEY)
        with pytest.raises(JobOrphanedError):
            service.resume_job(KEY)
    with make_test_service([every_minute], clock=clock, storage=storage) as service:
        job = service.get_job(KEY)
        assert job.state is JobState.ACTIVE  # registered again: restored, not re-created
        assert job.id == 1


def test_api_job_whose_function_is_unknown_is_orphaned_when_due(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service(clock=clock, storage=storage) as service:
        service.create_job("api-job", echo, interval=60, kwargs={"a": 1, "b": 2})
    with make_test_service(clock=clock, storage=storage) as service:  # echo not registered
        clock.advance(60)
        assert service.run_due() == []
        assert service.get_job("api-job").state is JobState.ORPHANED
        assert len(service.list_jobs()) == 1  # still listed, never deleted


def test_delete_job_keeps_history_and_cancels_pending(clock: FakeClock) -> None:
    with make_test_service([every_minute], clock=clock) as service:
        clock.advance(60)
        [done] = service.run_due()
        pending = service.trigger_job(KEY)
        service.delete_job(KEY)
        assert service.list_jobs() == []
        assert service.get_execution(done.id).status is ExecutionStatus.SUCCESS
        assert service.get_execution(pending.id).status is ExecutionStatus.CANCELLED


def test_preview_lists_next_fire_times(clock: FakeClock) -> None:
    with make_test_service(clock=clock) as service:
        service.create_job("weekdays", echo, cron="0 9 * * 1-5", kwargs={"a": 1, "b": 1})
        times = service.preview("weekdays", 6)
        assert [t.weekday() for t in times] == [1, 2, 3, 4, 0, 1]  # Tue..Fri, Mon, Tue
        assert all(t.hour == 9 and t.tzinfo is not None for t in times)


def test_history_pages_with_a_cursor_and_filters(clock: FakeClock) -> None:
    with make_test_service([every_minute], clock=clock) as service:
        for _ in range(5):
            clock.advance(60)
            service.run_due()
        first = service.list_executions(limit=2)
        assert len(first.items) == 2 and first.next_cursor is not None
        second = service.list_executions(limit=2, cursor=first.next_cursor)
        third = service.list_executions(limit=2, cursor=second.next_cursor)
        assert third.next_cursor is None
        ids = [e.id for page in (first, second, third) for e in page.items]
        assert len(ids) == len(set(ids)) == 5
        scheduled = [e.scheduled_for for page in (first, second, third) for e in page.items]
        assert scheduled == sorted(scheduled, reverse=True)
        window = service.list_executions(
            since=START + timedelta(minutes=2), until=START + timedelta(minutes=3)
        )
        assert len(window.items) == 2


def test_cleanup_history_deletes_only_old_finished_executions(clock: FakeClock) -> None:
    with make_test_service([every_minute], clock=clock) as service:
        clock.advance(60)
        service.run_due()
        pending = service.trigger_job(KEY)
        clock.advance(timedelta(days=10))
        assert service.cleanup_history(retention_days=7) == 1
        assert [e.id for e in service.list_executions().items] == [pending.id]


def test_health_reports_live_instances_and_overdue_work(clock: FakeClock) -> None:
    with make_test_service([every_minute], clock=clock) as service:
        healthy = service.health()
        assert healthy.ok and healthy.running and healthy.live_instances == 1
        assert healthy.oldest_overdue_at is None
        clock.advance(minutes=5)  # nobody claimed the 09:01 slot: it is overdue
        late = service.health()
        assert late.oldest_overdue_at == START + timedelta(minutes=1)
        assert late.overdue_seconds == 240
        clock.advance(minutes=1)  # now the instance's heartbeat is stale too
        assert service.health().live_instances == 0


def test_health_reports_a_broken_database_instead_of_raising() -> None:
    class Broken(MemoryStorage):
        def list_instances(self) -> list[object]:  # type: ignore[override]
            raise RuntimeError("connection refused")

    report = make_test_service(storage=Broken()).health()
    assert not report.ok and not report.database
    assert report.error == "RuntimeError: connection refused"


def test_health_reports_whether_the_schema_is_current(storage: Storage, backend: str) -> None:
    report = make_test_service(storage=storage).health()
    assert report.schema_current is (None if backend == "memory" else True)
    assert report.ok
