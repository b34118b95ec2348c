"""Maintenance windows and exclusion dates through a real service on every backend,
with a fake clock: a window skips exactly the slots inside it (over the night the
clocks go forward in Berlin), a ``defer`` window holds a job and its misfire policy
decides when the window closes, each change is in the audit log with who made it,
and bad input is refused with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from taskmgr import (
    InvalidCronError,
    InvalidPolicyError,
    InvalidTimezoneError,
    InvalidWindowError,
    SchedulerService,
    WindowExistsError,
    WindowInPastError,
    WindowJobNotFoundError,
    WindowNotFoundError,
    WindowOverlapError,
    scheduled_job,
)
from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.storage import Storage
from taskmgr.testing import FakeClock, make_test_service

BERLIN = "Europe/Berlin"
QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
#: Sunday 29 March 2026: Berlin's clocks jump from 02:00 CET to 03:00 CEST at 01:00 UTC.
SPRING = datetime(2026, 3, 29, tzinfo=UTC)
START = SPRING - 3 * HOUR - timedelta(minutes=1)
QUARTERLY = f"{__name__}.quarterly"
HOLIDAYS = f"{__name__}.holidays"


@scheduled_job(cron="*/15 * * * *", timezone=BERLIN, misfire_grace_time=None)
def quarterly() -> None:
    pass


@scheduled_job(
    cron="0 9 * * *", timezone=BERLIN, exclude_dates=["2026-03-30"], misfire_grace_time=None
)
def holidays() -> None:
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(storage: Storage, clock: FakeClock) -> Iterator[SchedulerService]:
    with make_test_service([quarterly, holidays], clock=clock, storage=storage) as service:
        yield service


def walk(service: SchedulerService, clock: FakeClock, until: datetime, step: timedelta) -> None:
    """Move the clock in ``step``s up to ``until``, running what is due at each."""
    while clock.now() < until:
        clock.set(min(clock.now() + step, until))
        while service.run_due():
            pass


def history(service: SchedulerService, key: str) -> list[tuple[datetime, str, str | None]]:
    page = service.list_executions(job_key=key, limit=500)
    return sorted((e.scheduled_for, e.status.value, e.error_message) for e in page.items)


def test_a_window_skips_exactly_the_slots_inside_it(
    service: SchedulerService, clock: FakeClock
) -> None:
    added = service.add_window(
        "sunday-db", weekly="sun 02:00-04:00", timezone=BERLIN, reason="db", actor="alice"
    )
    assert (added.cron, added.duration, added.created_by) == ("0 2 * * sun", 7200.0, "alice")
    walk(service, clock, SPRING + 3 * HOUR, timedelta(minutes=5))

    rows = history(service, QUARTERLY)
    slots = [SPRING - 3 * HOUR + n * QUARTER for n in range(25)]  # 21:00 .. 03:00 UTC
    assert [slot for slot, _, _ in rows] == slots
    # open from the jump (03:00 CEST, 01:00 UTC) until 04:00 CEST (02:00 UTC)
    inside = [slot for slot in slots if SPRING + HOUR <= slot < SPRING + 2 * HOUR]
    assert [slot for slot, status, _ in rows if status == "skipped"] == inside
    assert {message for _, status, message in rows if status == "skipped"} == {
        "in maintenance window 'sunday-db'"
    }
    assert {status for slot, status, _ in rows if slot not in inside} == {"success"}


def test_a_defer_window_holds_the_job_and_its_misfire_policy_decides_after(
    service: SchedulerService, clock: FakeClock
) -> None:
    opens = SPRING - 2 * HOUR
    service.add_window("deploy", job_key=QUARTERLY, action="defer", start=opens, end=opens + HOUR)
    walk(service, clock, opens + 50 * timedelta(minutes=1), timedelta(minutes=5))
    # nothing of the job ran in the window: its slot waits
    assert [slot for slot, _, _ in history(service, QUARTERLY)] == [
        opens - n * QUARTER for n in (4, 3, 2, 1)
    ]
    assert service.get_job(QUARTERLY).next_run_at == opens

    walk(service, clock, opens + HOUR + timedelta(minutes=1), timedelta(minutes=5))
    rows = history(service, QUARTERLY)[4:]
    # closed at 23:00: the four held slots coalesce into one run of the last due one
    assert [(slot, status) for slot, status, _ in rows] == [
        (opens, "missed"),
        (opens + QUARTER, "missed"),
        (opens + 2 * QUARTER, "missed"),
        (opens + 3 * QUARTER, "missed"),
        (opens + HOUR, "success"),
    ]
    assert rows[0][2] == f"coalesced into the run of {(opens + HOUR).isoformat()}"


def test_a_slot_on_an_exclusion_date_is_skipped(
    service: SchedulerService, clock: FakeClock
) -> None:
    walk(service, clock, datetime(2026, 3, 31, 8, tzinfo=UTC), HOUR)
    assert history(service, HOLIDAYS) == [
        (datetime(2026, 3, 29, 7, tzinfo=UTC), "success", None),
        (datetime(2026, 3, 30, 7, tzinfo=UTC), "skipped", "excluded date 2026-03-30"),
        (datetime(2026, 3, 31, 7, tzinfo=UTC), "success", None),
    ]


def test_exclusion_dates_are_changed_like_any_option(service: SchedulerService) -> None:
    changed = service.update_job(HOLIDAYS, exclude_dates=["2026-12-25"], actor="bob")
    assert changed.exclude_dates == (date(2026, 12, 25),)
    [entry] = service.list_audit(job_key=HOLIDAYS, action=AuditAction.UPDATE).items
    assert (entry.actor, entry.source) == ("bob", AuditSource.PYTHON)
    assert entry.details["changes"]["exclude_dates"]["after"] == ["2026-12-25"]
    made = service.create_job("adhoc", quarterly, interval=60, exclude_dates=[date(2026, 5, 1)])
    assert made.exclude_dates == (date(2026, 5, 1),)
    with pytest.raises(InvalidPolicyError):
        service.update_job(HOLIDAYS, exclude_dates=["tomorrow"])
    assert service.get_job(HOLIDAYS).exclude_dates == (date(2026, 12, 25),)


def test_each_window_change_is_in_the_audit_log(service: SchedulerService) -> None:
    service.add_window("a", start=START + HOUR, end=START + 2 * HOUR, actor="alice")
    service.add_window(
        "b", job_key=QUARTERLY, cron="0 3 * * *", duration=600, actor="bob", source="cli"
    )
    assert [w.name for w in service.list_windows()] == ["a", "b"]
    assert service.list_windows(open_only=True) == []
    removed = service.delete_window("a", actor="carol")
    assert removed.name == "a"
    entries = service.list_audit(action=[AuditAction.ADD_WINDOW, AuditAction.DELETE_WINDOW]).items
    assert [
        (e.action, e.actor, e.source, e.job_key, e.details["window"]["name"]) for e in entries
    ] == [
        (AuditAction.DELETE_WINDOW, "carol", AuditSource.PYTHON, None, "a"),
        (AuditAction.ADD_WINDOW, "bob", AuditSource.CLI, QUARTERLY, "b"),
        (AuditAction.ADD_WINDOW, "alice", AuditSource.PYTHON, None, "a"),
    ]


def test_bad_windows_are_refused_and_nothing_is_stored(service: SchedulerService) -> None:
    service.add_window("nightly", cron="0 1 * * *", duration=3600)
    refused = [
        ({"start": START + HOUR, "end": START}, InvalidWindowError),
        ({"start": START - 2 * HOUR, "end": START - HOUR}, WindowInPastError),
        ({"cron": "0 2 * * *", "duration": 3600, "timezone": "Atlantis/Capital"},
         InvalidTimezoneError),
        ({"cron": "0 2 * * *", "duration": 0}, InvalidWindowError),
        ({"cron": "0 * * * *", "duration": 7200}, InvalidWindowError),
        ({"cron": "0 2 * *", "duration": 60}, InvalidCronError),
        ({"weekly": "sun 02:00-04:00", "cron": "0 2 * * *"}, InvalidWindowError),
        ({"cron": "30 1 * * *", "duration": 3600}, WindowOverlapError),
        ({"job_key": "ghost", "cron": "0 2 * * *", "duration": 60}, WindowJobNotFoundError),
    ]  # fmt: skip
    for fields, error in refused:
        with pytest.raises(error):
            service.add_window("other", **fields)  # type: ignore[arg-type]
    with pytest.raises(WindowExistsError):
        service.add_window("nightly", cron="0 12 * * *", duration=60)
    with pytest.raises(WindowNotFoundError):
        service.delete_window("other")
    assert [w.name for w in service.list_windows()] == ["nightly"]
    entries = service.list_audit(action=[AuditAction.ADD_WINDOW, AuditAction.DELETE_WINDOW])
    assert len(entries.items) == 1
