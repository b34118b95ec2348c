"""The rules of pauses and backfills: which pause holds a job, where a job resumed at
its until goes on, which past slots a backfill may create, the slots of a range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskmgr.core.enums import JobSource, JobState, PauseScope
from taskmgr.core.models import Job
from taskmgr.core.pauses import Pause, check_until
from taskmgr.core.rules import backfill_frontier, holding_pause, in_effect, resume_slot_at
from taskmgr.core.triggers import Cron, Date, Interval, TriggerSpec
from taskmgr.exceptions import BackfillTooLargeError, InvalidDatetimeError, PauseUntilPastError
from taskmgr.scheduling.backfill import slots_between
from taskmgr.storage.common import job_from_definition
from tests.contract.helpers import definition

NOW = datetime(2026, 3, 29, 12, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def job(trigger: TriggerSpec, **fields: object) -> Job:
    made = job_from_definition(
        definition("j", trigger=trigger, queue=fields.pop("queue", None)),
        job_id=1,
        source=JobSource.API,
        state=JobState.ACTIVE,
        next_run_at=NOW,
        fingerprint=None,
        now=NOW,
    )
    return made.model_copy(update=fields)


def pause(scope: PauseScope, name: str | None = None, until: datetime | None = None) -> Pause:
    return Pause(scope=scope, name=name, paused_at=NOW, until=until)


def test_the_service_s_pause_holds_every_job_a_queue_s_only_its_own() -> None:
    reports = pause(PauseScope.QUEUE, "reports")
    service = pause(PauseScope.SERVICE)
    in_reports, in_none = job(Interval(60), queue="reports"), job(Interval(60))
    assert holding_pause(in_reports, [reports]) == reports
    assert holding_pause(in_none, [reports]) is None
    assert holding_pause(job(Interval(60), queue="emails"), [reports]) is None
    assert holding_pause(in_reports, [reports, service]) == service
    assert holding_pause(in_none, [service]) == service
    assert in_effect(pause(PauseScope.SERVICE, until=NOW + MINUTE), NOW)
    assert not in_effect(pause(PauseScope.SERVICE, until=NOW), NOW)


def test_a_job_resumed_at_its_until_goes_on_from_the_first_slot_at_or_after_it() -> None:
    every_minute = job(Interval(60, start=NOW))
    assert resume_slot_at(every_minute, NOW + 3 * MINUTE) == NOW + 3 * MINUTE
    assert resume_slot_at(every_minute, NOW + 3 * MINUTE + timedelta(seconds=1)) == NOW + 4 * MINUTE
    one_shot = job(Date(NOW - MINUTE), next_run_at=NOW - MINUTE)
    assert resume_slot_at(one_shot, NOW + MINUTE) == NOW - MINUTE  # its slot is kept


def test_a_backfill_stops_where_the_schedule_records_slots_itself() -> None:
    cron = Cron("* * * * *")
    assert backfill_frontier(job(cron, next_run_at=NOW), NOW) == NOW
    paused = job(cron, state=JobState.PAUSED, next_run_at=NOW - 60 * MINUTE)
    assert backfill_frontier(paused, NOW) is None  # resumed by hand: from after now
    assert backfill_frontier(paused.model_copy(update={"paused_until": NOW + MINUTE}), NOW) is None
    ran_out = paused.model_copy(update={"paused_until": NOW - 5 * MINUTE})
    assert backfill_frontier(ran_out, NOW) == NOW - 5 * MINUTE
    assert backfill_frontier(job(cron, state=JobState.ORPHANED), NOW) is None


def test_the_slots_of_a_range_both_ends_included_in_the_job_s_time_zone() -> None:
    every_minute = Cron("* * * * *")
    assert slots_between(every_minute, NOW - 3 * MINUTE, NOW, 10) == [
        NOW - 3 * MINUTE,
        NOW - 2 * MINUTE,
        NOW - MINUTE,
        NOW,
    ]
    assert slots_between(every_minute, NOW - 3 * MINUTE, NOW, 4)  # exactly the limit
    with pytest.raises(BackfillTooLargeError, match="more than 3 slots"):
        slots_between(every_minute, NOW - 3 * MINUTE, NOW, 3)
    # 02:30 Berlin falls in the spring-forward gap of 2026-03-29: it fires once, at 03:00
    nightly = Cron("30 2 * * *", timezone="Europe/Berlin")
    first, last = datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)
    assert slots_between(nightly, first, last, 10) == [
        datetime(2026, 3, 27, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    ]
    assert slots_between(Date(NOW), NOW - MINUTE, NOW + MINUTE, 1) == [NOW]
    assert slots_between(Interval(60, start=NOW), NOW - 5 * MINUTE, NOW + MINUTE, 9) == [
        NOW,
        NOW + MINUTE,
    ]


def test_an_until_must_be_an_aware_instant_in_the_future() -> None:
    assert check_until(None, NOW) is None
    later = datetime(2026, 3, 29, 14, 0, tzinfo=UTC)
    assert check_until(later, NOW) == later
    for past in (NOW, NOW - MINUTE):
        with pytest.raises(PauseUntilPastError):
            check_until(past, NOW)
    with pytest.raises(InvalidDatetimeError):
        check_until(datetime(2026, 4, 1), NOW)  # naive
    with pytest.raises(InvalidDatetimeError):
        check_until("2026-04-01T00:00:00Z", NOW)
