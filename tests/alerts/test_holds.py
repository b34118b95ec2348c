"""Maintenance windows, exclusion dates and pauses raise no false alerts, driven by hand
with a fake clock: a slot a ``defer`` window holds is not late while it is open; a
``skip`` window does not make the dead-man rule fire for time the job was not allowed
to run, and the rule still fires once the job fails outside it; a paused service's jobs
are not judged, and get a whole window of no success when it resumes. The retention
job deletes resolved incidents after ``incident_days``, never an open one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from taskmgr import AlertRule, SchedulerService, scheduled_job, task
from taskmgr.scheduling.retention import RETENTION_KEY
from taskmgr.testing import FakeClock, make_test_service

T0 = "2026-01-05T09:00:00+00:00"
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
#: ``dead_man`` and ``broken`` raise while this is set.
FAILING = threading.Event()


@scheduled_job("holds.hourly", interval=3600, misfire_grace_time=None, alert_late_after=30)
def hourly() -> str:
    return "ok"


@scheduled_job(
    "holds.dead-man", interval=3600, misfire_grace_time=None, alert_no_success_within=7200
)
def dead_man() -> str:
    if FAILING.is_set():
        raise RuntimeError("the report server is down")
    return "ok"


@task("holds.broken", alert_failures=1)
def broken() -> None:
    raise RuntimeError("always")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(autouse=True)
def _healthy() -> Iterator[None]:
    FAILING.clear()
    yield
    FAILING.clear()


def open_incidents(service: SchedulerService) -> list[tuple[str | None, AlertRule]]:
    service.check_alerts()
    return [(i.job_key, i.rule) for i in service.list_incidents(open_only=True)]


def test_a_slot_a_defer_window_holds_is_not_late_while_it_is_open(clock: FakeClock) -> None:
    with make_test_service(jobs=[hourly], clock=clock) as service:
        slot = service.get_job("holds.hourly").next_run_at
        assert slot is not None
        close = slot + 10 * MINUTE
        service.add_window(
            "deploy", job_key="holds.hourly", action="defer", start=slot - MINUTE, end=close
        )
        clock.set(slot + 5 * MINUTE)
        assert service.run_due() == []  # held
        assert open_incidents(service) == []  # 5 minutes after its time, and not late
        clock.set(close + 29 * SECOND)
        assert open_incidents(service) == []
        # nothing took it 30 s after the window closed (the scheduler is down): late
        clock.set(close + 30 * SECOND)
        assert open_incidents(service) == [("holds.hourly", AlertRule.LATE)]
        [late] = service.list_incidents(open_only=True)
        assert late.since == close + 30 * SECOND
        [run] = service.run_due()  # the held slot runs (no misfire grace)
        assert (run.scheduled_for, run.status) == (slot, "success")
        assert open_incidents(service) == []


def test_a_skip_window_does_not_make_the_dead_man_rule_fire(clock: FakeClock) -> None:
    with make_test_service(jobs=[dead_man], clock=clock) as service:
        first = service.get_job("holds.dead-man").next_run_at
        assert first is not None
        clock.set(first)
        [ok] = service.run_due()
        assert ok.status == "success"
        # the slots of 1, 2 and 3 hours later are skipped: 3 hours without a success,
        # but only 30 minutes of them the job was allowed to run
        service.add_window("db", start=first + 30 * MINUTE, end=first + 3 * HOUR + 30 * MINUTE)
        for hour in (1, 2, 3):
            clock.set(first + hour * HOUR)
            assert service.run_due() == []  # skipped
            assert open_incidents(service) == []
        assert [e.status for e in service.list_executions("holds.dead-man").items][:3] == [
            "skipped"
        ] * 3
        clock.set(first + 4 * HOUR)
        service.run_due()
        # outside the window the rule holds as always: failing runs, two hours, fires
        FAILING.set()
        for hour in (5, 6):
            clock.set(first + hour * HOUR)
            service.run_due()
        assert open_incidents(service) == [("holds.dead-man", AlertRule.NO_SUCCESS)]
        [incident] = service.list_incidents(open_only=True)
        assert incident.since == first + 6 * HOUR


def test_a_paused_service_raises_no_dead_man_alert_and_resumes_with_a_whole_window(
    clock: FakeClock,
) -> None:
    with make_test_service(jobs=[dead_man], clock=clock) as service:
        first = service.get_job("holds.dead-man").next_run_at
        assert first is not None
        clock.set(first)
        service.run_due()
        service.pause_service(reason="database migration")
        for hour in range(1, 25):  # a day paused: its slots pass, nothing is judged
            clock.set(first + hour * HOUR)
            assert service.run_due() == []
            assert open_incidents(service) == []
        resumed = clock.now()
        service.resume_service()
        assert open_incidents(service) == []  # a day without a success, and no alert
        FAILING.set()
        clock.set(first + 25 * HOUR)
        service.run_due()
        assert open_incidents(service) == []
        clock.set(resumed + 2 * HOUR)
        service.run_due()
        assert open_incidents(service) == [("holds.dead-man", AlertRule.NO_SUCCESS)]
        [incident] = service.list_incidents(open_only=True)
        assert incident.since == resumed + 2 * HOUR
        assert "since a pause that held it ended" in incident.message


def test_the_retention_job_deletes_resolved_incidents_after_their_days(
    clock: FakeClock,
) -> None:
    service = make_test_service(jobs=[hourly, broken], clock=clock)
    service.set_retention(30, every=3600, incident_days=10)
    with service:
        slot = service.get_job("holds.hourly").next_run_at
        assert slot is not None
        clock.set(slot + 31 * SECOND)
        assert open_incidents(service) == [("holds.hourly", AlertRule.LATE)]
        service.run_due()  # the slot is taken: resolved
        service.trigger_job("holds.broken")
        service.run_due()
        assert open_incidents(service) == [("holds.broken", AlertRule.FAILING)]
        [still_open, resolved] = service.list_incidents()
        clock.advance(days=10)
        [run] = [e for e in service.run_due() if e.job_key == RETENTION_KEY]
        assert run.result_summary is not None
        assert run.result_summary["deleted_incidents"] == 0  # ten days: not before
        clock.advance(3600)
        [run] = [e for e in service.run_due() if e.job_key == RETENTION_KEY]
        assert run.result_summary is not None
        assert run.result_summary["deleted_incidents"] == 1
        assert [i.id for i in service.list_incidents()] == [still_open.id]
        assert resolved.resolved_at is not None
        [entry, *_] = service.list_audit(action="retention").items
        assert entry.details["deleted_incidents"] == 1
