"""Contract: maintenance windows as every backend stores them (with their audit entries,
refusing a taken name, an unknown job, an overlap and a window already over, writing
nothing then), as every claim honours them (a ``skip`` window's slots are recorded
``skipped``, a ``defer`` window holds its jobs until it closes and the loop wakes up
then), and a job's exclusion dates."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import ExecutionStatus
from taskmgr.core.triggers import Interval
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.exceptions import (
    InvalidInputError,
    WindowExistsError,
    WindowInPastError,
    WindowJobNotFoundError,
    WindowNotFoundError,
    WindowOverlapError,
)
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.base import AuditFilter, AuditRecord, ClaimBatch, ExecutionFilter, Storage
from tests.conftest import OpenStorage

from .helpers import MINUTE, T0, add_job

OWNER = "instance-a"
WORK = "tests.contract.work"
HOUR = timedelta(hours=1)
EVERY_MINUTE = Interval(MINUTE, start=T0 - 60 * MINUTE)


def window(name: str, **fields: object) -> MaintenanceWindow:
    fields.setdefault("created_at", T0 - HOUR)
    fields.setdefault("created_by", "alice")
    if "cron" not in fields and "start" not in fields:
        fields.update(start=T0 - 5 * MINUTE, end=T0 + 5 * MINUTE)
    return MaintenanceWindow(name=name, **fields)


def record(action: AuditAction, actor: str = "alice") -> AuditRecord:
    return AuditRecord(action=action, source=AuditSource.API, at=T0, actor=actor)


def rows_of(storage: Storage, key: str) -> list[tuple[datetime, ExecutionStatus, str | None]]:
    found = storage.list_executions(ExecutionFilter(job_key=key), limit=100)
    return sorted((e.scheduled_for, e.status, e.error_message) for e in found)


class Seen:
    """The planner of one owner, keeping the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[ClaimBatch] = []
        self.planner = Planner(OWNER, {WORK})

    def __call__(self, batch: ClaimBatch):  # type: ignore[no-untyped-def]
        self.batches.append(batch)
        return self.planner(batch)


# -- storing windows --------------------------------------------------------------------


def test_windows_are_stored_listed_and_deleted_with_their_entries(storage: Storage) -> None:
    add_job(storage, "nightly")
    weekly = window("sunday-db", cron="0 2 * * SUN", duration=7200, timezone="Europe/Berlin")
    once = window("deploy", job_key="nightly", action="defer", reason="migration")
    assert storage.add_window(weekly, now=T0, audit=record(AuditAction.ADD_WINDOW)) == weekly
    assert storage.add_window(once, now=T0, audit=record(AuditAction.ADD_WINDOW, "bob")) == once
    assert storage.list_windows() == [once, weekly]  # by name

    removed = storage.delete_window("deploy", audit=record(AuditAction.DELETE_WINDOW, "carol"))
    assert removed == once
    assert storage.list_windows() == [weekly]

    entries = storage.list_audit(AuditFilter(), limit=10)
    assert [(e.action, e.actor, e.job_key) for e in entries[:3]] == [
        (AuditAction.DELETE_WINDOW, "carol", "nightly"),
        (AuditAction.ADD_WINDOW, "bob", "nightly"),
        (AuditAction.ADD_WINDOW, "alice", None),
    ]
    assert entries[0].details["window"] == once.model_dump(mode="json")
    assert entries[2].details["window"]["cron"] == "0 2 * * SUN"
    assert storage.list_audit(AuditFilter(job_key="nightly"), limit=10)[0] == entries[0]


def test_a_window_that_cannot_be_stored_leaves_nothing(storage: Storage) -> None:
    add_job(storage, "nightly")
    storage.add_window(window("first"), now=T0)
    refusals: list[tuple[object, type[Exception]]] = [
        (window("first", start=T0 + HOUR, end=T0 + 2 * HOUR), WindowExistsError),
        (window("ghost", job_key="ghost", start=T0 + HOUR, end=T0 + 2 * HOUR),
         WindowJobNotFoundError),
        (window("clash", start=T0 + 4 * MINUTE, end=T0 + HOUR), WindowOverlapError),
        (window("over", start=T0 - HOUR, end=T0), WindowInPastError),
        (window("x").model_copy(update={"created_at": None}), InvalidInputError),
        ("not a window", InvalidInputError),
    ]  # fmt: skip
    for refused, error in refusals:
        with pytest.raises(error):
            storage.add_window(refused, now=T0, audit=record(AuditAction.ADD_WINDOW))  # type: ignore[arg-type]
    with pytest.raises(WindowNotFoundError):
        storage.delete_window("ghost", audit=record(AuditAction.DELETE_WINDOW))
    assert [w.name for w in storage.list_windows()] == ["first"]
    assert storage.list_audit(AuditFilter(), limit=10) == []
    # another scope does not clash, and touching is not overlapping
    storage.add_window(window("job", job_key="nightly", start=T0, end=T0 + HOUR), now=T0)
    storage.add_window(window("next", start=T0 + 5 * MINUTE, end=T0 + HOUR), now=T0)


def test_of_two_overlapping_windows_added_at_once_one_is_stored(
    open_storage: OpenStorage, backend: str
) -> None:
    storages = [open_storage() for _ in range(4)]
    barrier = threading.Barrier(len(storages))
    outcomes: list[object] = []
    lock = threading.Lock()

    def add(storage: Storage, n: int) -> None:
        barrier.wait(timeout=30)
        try:
            storage.add_window(window(f"w{n}", start=T0 + n * MINUTE, end=T0 + HOUR), now=T0)
            result: object = "stored"
        except WindowOverlapError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=add, args=(s, n)) for n, s in enumerate(storages)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("stored") == 1
    assert len(outcomes) == 4
    assert len(storages[0].list_windows()) == 1


# -- what a claim does with them --------------------------------------------------------------


def test_a_claim_reads_the_windows_only_when_one_is_stored(storage: Storage) -> None:
    add_job(storage, "nightly", next_run_at=T0 - MINUTE, trigger=EVERY_MINUTE)
    seen = Seen()
    storage.claim(now=T0 - MINUTE, owner=OWNER, limit=10, planner=seen)
    assert list(seen.batches[-1].windows) == []
    stored = storage.add_window(window("w", start=T0 + HOUR, end=T0 + 2 * HOUR), now=T0)
    storage.claim(now=T0, owner=OWNER, limit=10, planner=seen)
    assert list(seen.batches[-1].windows) == [stored]


def test_the_slots_inside_a_skip_window_are_recorded_skipped(storage: Storage) -> None:
    add_job(storage, "nightly", next_run_at=T0 - 7 * MINUTE, trigger=EVERY_MINUTE)
    storage.add_window(window("maintenance"), now=T0 - 10 * MINUTE)  # T0 - 5 .. T0 + 5 min
    storage.claim(now=T0, owner=OWNER, limit=10, planner=Seen())
    rows = rows_of(storage, "nightly")
    reason = "in maintenance window 'maintenance'"
    assert [(slot, status) for slot, status, _ in rows if status is ExecutionStatus.SKIPPED] == [
        (T0 - n * MINUTE, ExecutionStatus.SKIPPED) for n in (5, 4, 3, 2, 1, 0)
    ]
    assert {message for _, status, message in rows if status is ExecutionStatus.SKIPPED} == {reason}
    assert len(rows) == 8  # T0 - 7 .. T0: before the window, the catch-up decides
    assert storage.get_job("nightly").next_run_at == T0 + MINUTE


def test_a_defer_window_holds_its_jobs_until_it_closes(storage: Storage) -> None:
    add_job(storage, "held", next_run_at=T0 - 2 * MINUTE, trigger=EVERY_MINUTE)
    add_job(storage, "free", next_run_at=T0 + 30 * MINUTE, trigger=EVERY_MINUTE)
    deploy = window(
        "deploy", job_key="held", action="defer", start=T0 - 3 * MINUTE, end=T0 + 10 * MINUTE
    )
    storage.add_window(deploy, now=T0 - 5 * MINUTE)

    seen = Seen()
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=seen) == []
    assert [job.key for job in seen.batches[-1].due_jobs] == []  # not even read
    assert storage.get_job("held").next_run_at == T0 - 2 * MINUTE  # its slot is kept
    # the loop wakes up when the window closes, not before (nor spins on the held job)
    assert storage.next_due_at() == T0 + 10 * MINUTE
    assert storage.next_claim_at(now=T0) == T0 + 10 * MINUTE  # what an idle loop polls

    # it closes: the held slots are late, and the misfire policy decides (grace 60 s)
    claimed = storage.claim(now=T0 + 10 * MINUTE, owner=OWNER, limit=10, planner=seen)
    assert [(c.execution.job_key, c.execution.scheduled_for) for c in claimed] == [
        ("held", T0 + 10 * MINUTE)
    ]
    rows = rows_of(storage, "held")
    assert [status for _, status, _ in rows] == [ExecutionStatus.MISSED] * 12 + [
        ExecutionStatus.RUNNING
    ]


def test_a_service_wide_defer_window_holds_every_job(storage: Storage) -> None:
    add_job(storage, "a", next_run_at=T0 - MINUTE, trigger=EVERY_MINUTE)
    add_job(storage, "b", next_run_at=T0 + 20 * MINUTE, trigger=EVERY_MINUTE)
    storage.add_window(
        window("freeze", action="defer", start=T0 - 2 * MINUTE, end=T0 + 10 * MINUTE), now=T0
    )
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=Seen()) == []
    assert storage.next_due_at() == T0 + 10 * MINUTE
    storage.delete_window("freeze")  # deleted: due at once
    assert storage.next_due_at() == T0 - MINUTE


def test_a_job_two_defer_windows_hold_waits_for_the_later_to_close(storage: Storage) -> None:
    add_job(storage, "held", next_run_at=T0 - MINUTE, trigger=EVERY_MINUTE)
    storage.add_window(
        window("job", job_key="held", action="defer", start=T0 - 2 * MINUTE, end=T0 + 10 * MINUTE),
        now=T0,
    )
    storage.add_window(
        window("all", action="defer", start=T0 - 5 * MINUTE, end=T0 + 20 * MINUTE), now=T0
    )
    # both hold its slot: the loop sleeps until the later closes, every backend alike
    assert storage.next_due_at() == T0 + 20 * MINUTE
    assert storage.next_claim_at(now=T0) == T0 + 20 * MINUTE
    assert storage.next_claim_at(now=T0 + 15 * MINUTE) == T0 + 20 * MINUTE
    assert storage.claim(now=T0 + 15 * MINUTE, owner=OWNER, limit=10, planner=Seen()) == []
    storage.delete_window("all")  # the job's own closed at 10 minutes: due, claim now
    assert storage.next_claim_at(now=T0 + 15 * MINUTE) == T0 + 10 * MINUTE


# -- exclusion dates ----------------------------------------------------------------------------


def test_a_job_keeps_its_exclusion_dates(storage: Storage) -> None:
    job = add_job(storage, "holidays", exclude_dates=["2026-12-25", "2026-01-01"])
    assert job.exclude_dates == (date(2026, 1, 1), date(2026, 12, 25))
    assert storage.get_job("holidays") == job
    assert add_job(storage, "plain").exclude_dates == ()
    changed = storage.update_job(
        "holidays",
        {"exclude_dates": ["2027-01-01"]},
        now=T0,
        audit=record(AuditAction.UPDATE),
    )
    assert changed.exclude_dates == (date(2027, 1, 1),)
    assert storage.get_job("holidays") == changed
    [entry] = storage.list_audit(AuditFilter(actions=[AuditAction.UPDATE]), limit=10)
    assert entry.details["changes"]["exclude_dates"] == {
        "before": ["2026-01-01", "2026-12-25"],
        "after": ["2027-01-01"],
    }
    cleared = storage.update_job("holidays", {"exclude_dates": None}, now=T0)
    assert cleared.exclude_dates == () == storage.get_job("holidays").exclude_dates


def test_a_slot_on_an_exclusion_date_is_recorded_skipped(storage: Storage) -> None:
    day = T0.date().isoformat()
    add_job(storage, "holidays", next_run_at=T0 - MINUTE, trigger=EVERY_MINUTE, exclude_dates=[day])
    assert storage.claim(now=T0, owner=OWNER, limit=10, planner=Seen()) == []
    assert rows_of(storage, "holidays") == [
        (T0 - MINUTE, ExecutionStatus.SKIPPED, f"excluded date {day}"),
        (T0, ExecutionStatus.SKIPPED, f"excluded date {day}"),
    ]
    assert storage.get_job("holidays").next_run_at == T0 + MINUTE
