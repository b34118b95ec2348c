"""Contract: a backfill writes the runs of past slots in one transaction, never a slot
the job already holds, never one its schedule records itself, and nothing at all when
it is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import ExecutionStatus, ExecutionTrigger, JobState
from taskmgr.core.triggers import Interval
from taskmgr.exceptions import (
    ConflictError,
    InvalidInputError,
    JobNotFoundError,
    VersionConflictError,
)
from taskmgr.scheduling.backfill import backfill_runs
from taskmgr.storage.base import AuditFilter, AuditRecord, ExecutionFilter, Storage

from .helpers import MINUTE, T0, add_job, new_execution

EVERY_MINUTE = Interval(MINUTE, start=T0 - 60 * MINUTE)
AUDIT = AuditRecord(
    action=AuditAction.BACKFILL,
    source=AuditSource.API,
    at=T0,
    actor="alice",
    details={"start": "range start"},
)


def slots(first: int, last: int) -> list[datetime]:
    """The minutes ``first..last`` (inclusive) before T0."""
    return [T0 - n * MINUTE for n in range(last, first - 1, -1)]


def stored_slots(storage: Storage, key: str) -> list[tuple[datetime, str, str]]:
    rows = storage.list_executions(ExecutionFilter(job_key=key), limit=1000)
    return sorted((e.scheduled_for, e.trigger.value, e.status.value) for e in rows)


def test_backfill_writes_each_past_slot_once_and_records_it(storage: Storage) -> None:
    job = add_job(storage, "b", next_run_at=T0 - 5 * MINUTE, trigger=EVERY_MINUTE)
    # the schedule recorded T0 - 6 min (missed); from T0 - 5 min on, the slots are its own
    missed = new_execution(
        job,
        scheduled_for=T0 - 6 * MINUTE,
        trigger=ExecutionTrigger.SCHEDULE,
        status=ExecutionStatus.MISSED,
        completed_at=T0 - 6 * MINUTE,
    )
    storage.add_execution(missed)

    news = backfill_runs(job, slots(1, 9), now=T0, actor="alice")
    written = storage.add_backfill(news, job=job, now=T0, audit=AUDIT)
    created = [e.scheduled_for for e in written.created]
    assert created == slots(7, 9)
    assert (written.existing, written.scheduled) == (1, 5)
    assert all(
        e.trigger is ExecutionTrigger.BACKFILL
        and e.status is ExecutionStatus.PENDING
        and e.queued
        and e.actor == "alice"
        for e in written.created
    )
    [entry] = storage.list_audit(AuditFilter(actions=[AuditAction.BACKFILL]), limit=10)
    assert (entry.job_key, entry.actor, entry.source) == ("b", "alice", AuditSource.API)
    assert entry.details == {"start": "range start", "created": 3, "existing": 1, "scheduled": 5}

    # the same backfill again creates nothing, and records nothing
    again = storage.add_backfill(
        backfill_runs(job, slots(1, 9), now=T0, actor="alice"), job=job, now=T0, audit=AUDIT
    )
    assert (list(again.created), again.existing, again.scheduled) == ([], 4, 5)
    assert len(storage.list_audit(AuditFilter(actions=[AuditAction.BACKFILL]), limit=10)) == 1
    assert [s for s, trigger, _ in stored_slots(storage, "b") if trigger == "backfill"] == created


def test_a_refused_backfill_writes_nothing(storage: Storage) -> None:
    job = add_job(storage, "r", next_run_at=T0 + MINUTE, trigger=EVERY_MINUTE)
    news = backfill_runs(job, slots(1, 3), now=T0, actor=None)

    storage.update_job("r", {"max_retries": 2}, now=T0)
    with pytest.raises(VersionConflictError):  # the job changed since it was read
        storage.add_backfill(news, job=job, now=T0, audit=AUDIT)
    fresh = storage.get_job("r")
    doubled = backfill_runs(fresh, [T0 - MINUTE, T0 - MINUTE], now=T0, actor=None)
    with pytest.raises(ConflictError):  # two runs of one slot
        storage.add_backfill(doubled, job=fresh, now=T0, audit=AUDIT)
    stored = storage.add_execution(new_execution(fresh, scheduled_for=T0 - 9 * MINUTE))
    taken = backfill_runs(fresh, slots(1, 3), now=T0, actor=None)
    taken[-1] = replace(taken[-1], id=stored.id)
    with pytest.raises(ConflictError):  # an id is taken: none of them is written (atomic)
        storage.add_backfill(taken, job=fresh, now=T0, audit=AUDIT)
    manual = [replace(news[0], trigger=ExecutionTrigger.MANUAL)]
    with pytest.raises(InvalidInputError):  # not a backfill's run
        storage.add_backfill(manual, job=fresh, now=T0, audit=AUDIT)
    fresh = storage.get_job("r")
    storage.delete_job("r", now=T0)
    with pytest.raises(JobNotFoundError):
        storage.add_backfill(
            backfill_runs(fresh, slots(1, 2), now=T0, actor=None), job=fresh, now=T0, audit=AUDIT
        )
    assert stored_slots(storage, "r") == [(T0 - 9 * MINUTE, "manual", "cancelled")]
    assert storage.list_audit(AuditFilter(actions=[AuditAction.BACKFILL]), limit=10) == []


def test_backfill_of_a_paused_job_stops_where_its_until_resumes_it(storage: Storage) -> None:
    job = add_job(storage, "p", next_run_at=T0 - 30 * MINUTE, trigger=EVERY_MINUTE)
    changes = {"state": JobState.PAUSED, "paused_until": T0 - 3 * MINUTE}
    storage.update_job("p", changes, now=T0 - 40 * MINUTE)
    job = storage.get_job("p")
    written = storage.add_backfill(
        backfill_runs(job, slots(1, 5), now=T0, actor=None), job=job, now=T0, audit=AUDIT
    )
    # T0 - 3 min on: the schedule's, once the claim resumes the job at its until
    assert [e.scheduled_for for e in written.created] == slots(4, 5)
    assert written.scheduled == 3
