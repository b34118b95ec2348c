"""A one-shot ``Date`` job never loses its slot silently: paused (or orphaned, or
disabled in code) past its time and then made active again, it keeps the slot, and
its misfire policy decides, exactly as for one created after its time: within
``misfire_grace_time`` it runs once, beyond it a ``missed`` row says why. A slot
already taken is never run again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskmgr import ExecutionStatus, ExecutionTrigger, JobState, scheduled_job
from taskmgr.storage import Storage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
AT = START + timedelta(minutes=1)
GRACE = 60.0
KEY = "report.once"
CODE_KEY = f"{__name__}.once_in_code"


def report() -> str:
    return "done"


@scheduled_job(at=AT, misfire_grace_time=GRACE)
def once_in_code() -> None:
    pass


@scheduled_job(CODE_KEY, at=AT, misfire_grace_time=GRACE, enabled=False)
def once_in_code_disabled() -> None:
    pass


def history(service: object, key: str) -> list[tuple[datetime, str, str]]:
    page = service.list_executions(job_key=key)  # type: ignore[attr-defined]
    return [(e.scheduled_for, e.status.value, e.trigger.value) for e in page.items]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def test_resumed_within_grace_after_its_time_runs_once(clock: FakeClock) -> None:
    with make_test_service([report], clock=clock) as service:
        service.create_job(KEY, report, at=AT, misfire_grace_time=GRACE)
        service.pause_job(KEY)
        clock.set(AT + timedelta(seconds=30))  # its time passed while paused
        assert service.run_due() == []
        resumed = service.resume_job(KEY)
        assert resumed.next_run_at == AT  # the untaken slot is kept
        [run] = service.run_due()
        assert run.status is ExecutionStatus.SUCCESS
        assert run.trigger is ExecutionTrigger.SCHEDULE
        assert service.get_job(KEY).next_run_at is None
        clock.advance(hours=1)
        assert service.run_due() == []
        assert history(service, KEY) == [(AT, "success", "schedule")]


def test_resumed_beyond_grace_records_a_missed_row_with_the_reason(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([report], clock=clock, storage=storage) as service:
        service.create_job(KEY, report, at=AT, misfire_grace_time=GRACE)
        service.pause_job(KEY)
        clock.set(AT + timedelta(hours=2))
        service.resume_job(KEY)
        assert service.run_due() == []  # nothing runs ...
        [missed] = service.list_executions(job_key=KEY).items  # ... but the slot is a row
        assert missed.status is ExecutionStatus.MISSED
        assert missed.scheduled_for == AT
        assert missed.error_message is not None
        assert "beyond the misfire grace time of 60s" in missed.error_message
        assert service.get_job(KEY).next_run_at is None


def test_a_slot_already_taken_is_not_run_again_on_resume(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([report], clock=clock, storage=storage) as service:
        service.create_job(KEY, report, at=AT)
        clock.set(AT)
        [run] = service.run_due()
        assert run.status is ExecutionStatus.SUCCESS
        service.pause_job(KEY)
        clock.advance(minutes=5)
        assert service.resume_job(KEY).next_run_at is None
        clock.advance(minutes=5)
        assert service.run_due() == []
        assert history(service, KEY) == [(AT, "success", "schedule")]


def test_a_code_job_disabled_then_enabled_after_its_time_follows_its_misfire_policy(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([once_in_code_disabled], clock=clock, storage=storage) as service:
        assert service.get_job(CODE_KEY).state is JobState.PAUSED
    clock.set(AT + timedelta(seconds=20))  # its time passed while disabled
    with make_test_service([once_in_code], clock=clock, storage=storage) as service:
        job = service.get_job(CODE_KEY)
        assert job.state is JobState.ACTIVE and job.next_run_at == AT
        [run] = service.run_due()
        assert run.status is ExecutionStatus.SUCCESS and run.scheduled_for == AT


def test_an_orphaned_code_job_restored_after_its_time_records_its_slot(
    clock: FakeClock, storage: Storage
) -> None:
    with make_test_service([once_in_code], clock=clock, storage=storage):
        pass
    with make_test_service([], clock=clock, storage=storage) as service:
        assert service.get_job(CODE_KEY).state is JobState.ORPHANED
        clock.set(AT + timedelta(hours=1))
        assert service.run_due() == []
    with make_test_service([once_in_code], clock=clock, storage=storage) as service:
        assert service.get_job(CODE_KEY).next_run_at == AT
        assert service.run_due() == []
        assert history(service, CODE_KEY) == [(AT, "missed", "schedule")]
