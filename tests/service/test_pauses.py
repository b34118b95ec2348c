"""Pauses with who, why and until when (of a job, a queue, the whole service) and
backfills, through the service, on every backend, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmgr import (
    ExecutionStatus,
    ExecutionTrigger,
    InvalidDatetimeError,
    JobNotFoundError,
    JobState,
    SchedulerService,
    scheduled_job,
    task,
)
from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import PauseScope
from taskmgr.exceptions import (
    BackfillTooLargeError,
    InvalidBackfillError,
    InvalidInputError,
    PauseUntilPastError,
)
from taskmgr.storage import Storage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
REPORTS = f"{__name__}.report"
MINUTELY = f"{__name__}.minutely"
TASK = "pauses.note"


@scheduled_job(interval=60, queue="reports")
def report() -> None:
    pass


@scheduled_job(cron="* * * * *", misfire_grace_time=None)
def minutely() -> None:
    pass


@task(TASK)
def note(text: str) -> str:
    return text


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(storage: Storage, clock: FakeClock) -> Any:
    with make_test_service([report, minutely, note], clock=clock, storage=storage) as service:
        yield service


def history(service: SchedulerService, key: str) -> list[tuple[datetime, str, str]]:
    page = service.list_executions(job_key=key, limit=500)
    return sorted((e.scheduled_for, e.trigger.value, e.status.value) for e in page.items)


def at(
    clock: FakeClock, when: datetime, service: SchedulerService, key: str | None = None
) -> list[Any]:
    """Move the clock to ``when`` and run what is due (of job ``key``, if given)."""
    clock.set(when)
    ran: list[Any] = []
    while batch := service.run_due():
        ran.extend(batch)
    return [run for run in ran if key is None or run.job_key == key]


def audit(service: SchedulerService, action: str) -> list[Any]:
    return service.list_audit(action=action).items


# -- a job's pause ----------------------------------------------------------------------


def test_a_job_paused_until_a_time_resumes_by_itself_then(
    service: SchedulerService, clock: FakeClock
) -> None:
    until = START + 3 * MINUTE + timedelta(seconds=30)
    job = service.pause_job(REPORTS, reason="deploy freeze", until=until, actor="alice")
    assert job.state is JobState.PAUSED and job.next_run_at is None
    assert (job.paused_by, job.paused_reason, job.paused_at, job.paused_until) == (
        "alice",
        "deploy freeze",
        START,
        until,
    )
    [listed] = service.list_pauses()
    assert (listed.scope, listed.name, listed.reason, listed.until) == (
        PauseScope.JOB,
        REPORTS,
        "deploy freeze",
        until,
    )
    assert listed.describe() == (
        f"job {REPORTS!r} paused by alice: deploy freeze (until {until.isoformat()})"
    )

    assert at(clock, START + 3 * MINUTE, service, REPORTS) == []  # 09:01-09:03: paused
    assert at(clock, until, service, REPORTS) == []  # resumed: its next slot is 09:04
    resumed = service.get_job(REPORTS)
    assert resumed.state is JobState.ACTIVE and resumed.next_run_at == START + 4 * MINUTE
    assert resumed.paused_by is resumed.paused_until is None
    [entry] = audit(service, "resume")
    assert (entry.actor, entry.source, entry.at) == ("taskmgr", AuditSource.SCHEDULE, until)

    [run] = at(clock, START + 4 * MINUTE, service, REPORTS)
    assert run.status is ExecutionStatus.SUCCESS
    # the slots that fell while it was paused are neither run nor recorded
    assert history(service, REPORTS) == [(START + 4 * MINUTE, "schedule", "success")]


def test_a_slot_at_until_runs_and_a_manual_resume_clears_the_pause(
    service: SchedulerService, clock: FakeClock
) -> None:
    service.pause_job(REPORTS, until=START + 2 * MINUTE)
    [run] = at(clock, START + 2 * MINUTE + timedelta(seconds=1), service, REPORTS)
    assert run.scheduled_for == START + 2 * MINUTE  # at or after until: not paused then

    service.pause_job(REPORTS, reason="one", until=START + 9 * MINUTE, actor="a")
    replaced = service.pause_job(REPORTS, reason="two", until=START + 8 * MINUTE, actor="b")
    assert (replaced.paused_by, replaced.paused_reason) == ("b", "two")
    assert replaced.paused_at == START + 2 * MINUTE + timedelta(seconds=1)  # kept
    service.pause_job(REPORTS, reason="two", until=START + 8 * MINUTE, actor="c")  # the same
    assert len(audit(service, "pause")) == 3
    resumed = service.resume_job(REPORTS, actor="b")
    assert resumed.paused_until is None and resumed.paused_reason is None
    assert service.list_pauses() == []


def test_a_pause_until_a_past_time_is_refused_and_nothing_is_stored(
    service: SchedulerService, clock: FakeClock
) -> None:
    before = service.get_job(REPORTS)
    for until in (START - timedelta(seconds=1), START):
        with pytest.raises(PauseUntilPastError, match="not in the future") as refused:
            service.pause_job(REPORTS, until=until)
        assert refused.value.field == "until"
        with pytest.raises(PauseUntilPastError):
            service.pause_queue("reports", until=until)
        with pytest.raises(PauseUntilPastError):
            service.pause_service(until=until)
    with pytest.raises(InvalidDatetimeError):
        service.pause_job(REPORTS, until=datetime(2026, 2, 1))  # naive
    with pytest.raises(InvalidInputError):
        service.pause_job(REPORTS, reason="x" * 501)
    with pytest.raises(InvalidInputError):
        service.pause_queue("")
    assert service.get_job(REPORTS) == before
    assert service.list_pauses() == [] and audit(service, "pause") == []


# -- pauses of a queue and of the whole service ----------------------------------------------


def test_a_paused_queue_holds_its_jobs_those_created_later_too(
    service: SchedulerService, clock: FakeClock
) -> None:
    until = START + 5 * MINUTE + timedelta(seconds=30)
    paused = service.pause_queue("reports", reason="db migration", until=until, actor="ops")
    later = service.create_job("later.report", report, interval=60, queue="reports")
    assert later.queue == "reports"
    [listed] = service.list_pauses()
    assert (listed.scope, listed.name, listed.paused_by) == (PauseScope.QUEUE, "reports", "ops")
    assert listed == paused
    assert service.health().pauses == [paused]

    ran = at(clock, START + 2 * MINUTE, service)
    assert {r.job_key for r in ran} == {MINUTELY}  # the other queue's job runs
    manual = service.trigger_job(REPORTS)  # asked for while paused: it waits
    assert at(clock, START + 5 * MINUTE, service, REPORTS) == []
    assert service.get_execution(manual.id).status is ExecutionStatus.PENDING

    ran = at(clock, until, service)  # the pause ends: the waiting run starts
    assert [r.id for r in ran] == [manual.id]
    assert service.list_pauses() == []
    [ended] = audit(service, "resume")
    assert (ended.actor, ended.source, ended.details["pause"]["name"]) == (
        "taskmgr",
        AuditSource.SCHEDULE,
        "reports",
    )
    ran = at(clock, START + 6 * MINUTE, service)
    assert {r.job_key for r in ran} == {REPORTS, "later.report", MINUTELY}
    assert history(service, REPORTS) == [
        (START + 2 * MINUTE, "manual", "success"),  # asked for at 09:02, run at the end
        (START + 6 * MINUTE, "schedule", "success"),
    ]


def test_a_paused_service_fires_nothing_and_deferred_tasks_wait(
    service: SchedulerService, clock: FakeClock
) -> None:
    service.pause_service(reason="incident", actor="bob")
    deferred = service.defer(TASK, text="hi")
    assert at(clock, START + 3 * MINUTE, service) == []
    assert service.get_execution(deferred.id).status is ExecutionStatus.PENDING
    assert [p.scope for p in service.health().pauses] == [PauseScope.SERVICE]
    assert service.resume_service(actor="bob") is not None
    assert service.resume_service(actor="bob") is None  # nothing was paused: not recorded
    ran = at(clock, START + 3 * MINUTE + timedelta(seconds=1), service)
    assert [r.id for r in ran] == [deferred.id]
    assert sorted(r.job_key for r in at(clock, START + 4 * MINUTE, service)) == [MINUTELY, REPORTS]
    assert history(service, MINUTELY) == [(START + 4 * MINUTE, "schedule", "success")]
    assert [
        (e.action, e.actor, e.details["pause"]["reason"])
        for e in service.list_audit(action=["pause", "resume"]).items
    ] == [(AuditAction.RESUME, "bob", "incident"), (AuditAction.PAUSE, "bob", "incident")]


# -- backfill ---------------------------------------------------------------------------


def test_backfill_creates_the_past_slots_once_each_bounded_by_max_instances(
    service: SchedulerService, clock: FakeClock
) -> None:
    service.pause_job(MINUTELY, actor="ops")
    at(clock, START + 10 * MINUTE + timedelta(seconds=5), service)
    service.resume_job(MINUTELY)  # 09:01-09:10 fell while it was paused

    result = service.backfill(
        MINUTELY, START + MINUTE, START + 10 * MINUTE, actor="ops", source="cli"
    )
    assert (result.slots, result.created, result.existing, result.scheduled) == (10, 10, 0, 0)
    assert (result.first_created, result.last_created) == (START + MINUTE, START + 10 * MINUTE)
    [entry] = audit(service, "backfill")
    assert (entry.job_key, entry.actor, entry.source) == (MINUTELY, "ops", AuditSource.CLI)
    assert entry.details["created"] == 10 and entry.details["max_runs"] == 1000

    started = [service.run_due() for _ in range(10)]  # one at a time: max_instances=1
    assert [len(batch) for batch in started] == [1] * 10
    assert [batch[0].scheduled_for for batch in started] == [
        START + n * MINUTE for n in range(1, 11)
    ]
    assert {batch[0].trigger for batch in started} == {ExecutionTrigger.BACKFILL}

    again = service.backfill(MINUTELY, START, START + 10 * MINUTE)  # 09:00 was never a slot
    assert (again.slots, again.created, again.existing) == (11, 1, 10)
    assert len(audit(service, "backfill")) == 2


def test_a_refused_backfill_stores_nothing(service: SchedulerService, clock: FakeClock) -> None:
    clock.set(START + 30 * MINUTE)
    first, last = START, START + 20 * MINUTE
    with pytest.raises(InvalidBackfillError, match="before end"):
        service.backfill(MINUTELY, last, first)
    with pytest.raises(InvalidBackfillError, match="in the future"):
        service.backfill(MINUTELY, first, START + 31 * MINUTE)
    with pytest.raises(BackfillTooLargeError, match="more than 5 slots") as refused:
        service.backfill(MINUTELY, first, last, max_runs=5)
    assert refused.value.field == "max_runs"
    with pytest.raises(InvalidInputError):
        service.backfill(MINUTELY, first, last, max_runs=0)
    with pytest.raises(InvalidBackfillError, match="task"):
        service.backfill(TASK, first, last)
    with pytest.raises(JobNotFoundError):
        service.backfill("no.such.job", first, last)
    with pytest.raises(InvalidDatetimeError):
        service.backfill(MINUTELY, datetime(2026, 1, 5), last)  # naive
    assert service.list_executions(trigger="backfill").items == []
    assert audit(service, "backfill") == []
