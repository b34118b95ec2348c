"""The planner with maintenance windows and exclusion dates: a ``skip`` window records
exactly the slots inside it as ``skipped`` (across the DST nights of Europe/Berlin), a
``defer`` window holds them until it closes and the misfire policy decides them then,
and a slot on an exclusion date is skipped with that date as the reason."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr.core.enums import ExecutionStatus, ExecutionTrigger, JobSource, JobState
from taskmgr.core.models import Job
from taskmgr.core.triggers import Cron, Interval, TriggerSpec
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.base import ClaimBatch, NewExecution
from taskmgr.storage.common import job_from_definition
from tests.contract.helpers import definition

FUNC = "tests.contract.work"
HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
BERLIN = "Europe/Berlin"
SPRING = datetime(2026, 3, 29, tzinfo=UTC)  # 02:00 CET -> 03:00 CEST at 01:00 UTC
AUTUMN = datetime(2026, 10, 25, tzinfo=UTC)  # 03:00 CEST -> 02:00 CET at 01:00 UTC
SUNDAY_DB = {"cron": "0 2 * * SUN", "duration": 7200, "timezone": BERLIN}


def job(trigger: TriggerSpec, next_run_at: datetime, **options: object) -> Job:
    return job_from_definition(
        definition("nightly", trigger=trigger, func=FUNC, **options),
        job_id=1,
        source=JobSource.API,
        state=JobState.ACTIVE,
        next_run_at=next_run_at,
        fingerprint=None,
        now=next_run_at - HOUR,
    )


def batch(
    current: Job, now: datetime, windows: Sequence[MaintenanceWindow], **fields: object
) -> ClaimBatch:
    return ClaimBatch(
        now=now,
        due_jobs=[current],
        due_pending=[],
        jobs={current.id: current},
        active={},
        windows=windows,
        **fields,  # type: ignore[arg-type]
    )


def walk(current: Job, until: datetime, windows: Sequence[MaintenanceWindow]) -> list[NewExecution]:
    """Claim each slot at its own time, as a running service does, up to ``until``."""
    planner = Planner("me", {FUNC})
    rows: list[NewExecution] = []
    while current.next_run_at is not None and current.next_run_at <= until:
        plan = planner.plan(batch(current, current.next_run_at, windows))
        [advance] = plan.advances
        rows += advance.executions
        current = current.model_copy(update={"next_run_at": advance.next_run_at})
    return rows


def skipped(rows: Sequence[NewExecution]) -> list[datetime]:
    return [r.scheduled_for for r in rows if r.status is ExecutionStatus.SKIPPED]


def quarters(start: datetime, end: datetime) -> list[datetime]:
    """The quarter hours in ``[start, end)``."""
    count = int((end - start) / QUARTER)
    return [start + n * QUARTER for n in range(count)]


@pytest.mark.parametrize(
    ("night", "opens", "closes"),
    [
        # spring forward: open from the jump (03:00 CEST, 01:00 UTC) until 04:00 CEST
        (SPRING, SPRING + HOUR, SPRING + 2 * HOUR),
        # fall back: open from 02:00 CEST (00:00 UTC) until 04:00 CET (03:00 UTC)
        (AUTUMN, AUTUMN, AUTUMN + 3 * HOUR),
        # an ordinary Sunday in summer: 02:00-04:00 CEST is 00:00-02:00 UTC
        (datetime(2026, 6, 7, tzinfo=UTC), datetime(2026, 6, 7, tzinfo=UTC),
         datetime(2026, 6, 7, 2, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_a_skip_window_skips_exactly_the_slots_inside_it(
    night: datetime, opens: datetime, closes: datetime
) -> None:
    sunday_db = MaintenanceWindow(name="sunday-db", **SUNDAY_DB)
    start = night - 4 * HOUR
    every_quarter = job(Interval(QUARTER, start=start), start)
    rows = walk(every_quarter, night + 6 * HOUR, [sunday_db])

    assert [r.scheduled_for for r in rows] == quarters(start, night + 6 * HOUR + QUARTER)
    assert skipped(rows) == quarters(opens, closes)
    inside = [r for r in rows if r.status is ExecutionStatus.SKIPPED]
    assert {r.error_message for r in inside} == {"in maintenance window 'sunday-db'"}
    assert all(r.completed_at is not None for r in inside)
    assert {r.status for r in rows if r not in inside} == {ExecutionStatus.RUNNING}


@pytest.mark.parametrize("night", [SPRING, AUTUMN])
def test_the_slots_inside_are_skipped_too_when_caught_up_at_once(night: datetime) -> None:
    """After an outage over the window, one claim decides every slot: those inside the
    window are skipped, the others are the catch-up's, as the misfire policy says."""
    sunday_db = MaintenanceWindow(name="sunday-db", **SUNDAY_DB)
    start = night - HOUR
    current = job(Interval(QUARTER, start=start), start, misfire_grace_time=None, coalesce=False)
    plan = Planner("me", {FUNC}).plan(batch(current, night + 4 * HOUR, [sunday_db]))
    [advance] = plan.advances
    expected = walk(current, night + 4 * HOUR, [sunday_db])
    assert skipped(advance.executions) == skipped(expected)
    assert all(r.trigger is ExecutionTrigger.CATCHUP for r in advance.executions
               if r.status is not ExecutionStatus.SKIPPED)  # fmt: skip
    assert advance.next_run_at == night + 4 * HOUR + QUARTER


def test_a_fixed_time_job_in_the_skipped_hour_is_skipped_when_it_fires() -> None:
    """A daily 02:30 Berlin job fires at 03:00 CEST on the spring-forward night (G5), at
    its first 02:30 on the fall-back night: inside the window both times."""
    sunday_db = MaintenanceWindow(name="sunday-db", **SUNDAY_DB)
    daily = Cron("30 2 * * *", timezone=BERLIN)
    for night, fires in ((SPRING, SPRING + HOUR), (AUTUMN, AUTUMN + HOUR / 2)):
        first = daily.next_fire_times(night - 2 * timedelta(days=1), 1)[0]
        rows = walk(job(daily, first), night + timedelta(days=1), [sunday_db])
        assert skipped(rows) == [fires]
        assert len(rows) == 3  # Friday, Saturday, Sunday (skipped)


def test_a_defer_window_holds_the_slots_and_the_misfire_policy_decides_at_its_end() -> None:
    night = SPRING  # open 01:00-02:00 UTC
    hold = MaintenanceWindow(name="sunday-db", action="defer", **SUNDAY_DB)
    start = night
    current = job(Interval(QUARTER, start=start), start, misfire_grace_time=None)
    planner = Planner("me", {FUNC})
    rows: list[NewExecution] = []
    now = start
    while now < night + 2 * HOUR:
        plan = planner.plan(batch(current, now, [hold]))
        for advance in plan.advances:
            rows += advance.executions
            current = current.model_copy(update={"next_run_at": advance.next_run_at})
        now += QUARTER
    # 00:00-00:45 ran on time; from 01:00 on the job waits (its next slot is kept)
    assert [r.scheduled_for for r in rows] == quarters(night, night + HOUR)
    assert current.next_run_at == night + HOUR

    # the window closes at 02:00: the slots it held are late, and coalesce into one run
    [advance] = planner.plan(batch(current, night + 2 * HOUR, [hold])).advances
    statuses = [(r.scheduled_for, r.status) for r in advance.executions]
    assert statuses == [
        *((slot, ExecutionStatus.MISSED) for slot in quarters(night + HOUR, night + 2 * HOUR)),
        (night + 2 * HOUR, ExecutionStatus.RUNNING),
    ]
    assert advance.executions[0].error_message == (
        f"coalesced into the run of {(night + 2 * HOUR).isoformat()}"
    )


def test_slots_before_a_defer_window_are_decided_and_those_inside_it_wait() -> None:
    """A claim late by an outage meets slots before and inside an open defer window: the
    first are decided now, the rest wait for the window's end."""
    hold = MaintenanceWindow(
        name="deploy", action="defer", start=SPRING + HOUR, end=SPRING + 2 * HOUR
    )
    current = job(Interval(QUARTER, start=SPRING), SPRING, misfire_grace_time=None)
    late = SPRING + timedelta(minutes=90)  # the window is open
    [advance] = Planner("me", {FUNC}).plan(batch(current, late, [hold])).advances
    assert [r.scheduled_for for r in advance.executions] == quarters(SPRING, SPRING + HOUR)
    assert advance.next_run_at == SPRING + HOUR


def test_a_defer_window_on_another_job_holds_nothing_here() -> None:
    hold = MaintenanceWindow(
        name="other", job_key="other", action="defer", start=SPRING, end=SPRING + HOUR
    )
    current = job(Interval(QUARTER, start=SPRING), SPRING)
    [advance] = Planner("me", {FUNC}).plan(batch(current, SPRING, [hold])).advances
    assert [r.status for r in advance.executions] == [ExecutionStatus.RUNNING]


def test_a_slot_on_an_exclusion_date_is_skipped_and_the_schedule_goes_on() -> None:
    daily = Cron("0 9 * * *", timezone=BERLIN)
    christmas_eve = datetime(2026, 12, 24, 8, tzinfo=UTC)
    current = job(daily, christmas_eve, exclude_dates=["2026-12-25"])
    rows = walk(current, datetime(2026, 12, 26, 9, tzinfo=UTC), [])
    assert [(r.scheduled_for.day, r.status, r.error_message) for r in rows] == [
        (24, ExecutionStatus.RUNNING, None),
        (25, ExecutionStatus.SKIPPED, "excluded date 2026-12-25"),
        (26, ExecutionStatus.RUNNING, None),
    ]


def test_the_exclusion_date_is_read_in_the_trigger_s_time_zone() -> None:
    # 00:30 Berlin on the 25th is 23:30 UTC on the 24th
    at_half_past_midnight = Cron("30 0 * * *", timezone=BERLIN)
    slot = datetime(2026, 12, 24, 23, 30, tzinfo=UTC)
    current = job(at_half_past_midnight, slot, exclude_dates=["2026-12-25"])
    [advance] = Planner("me", {FUNC}).plan(batch(current, slot, [])).advances
    assert advance.executions[0].error_message == "excluded date 2026-12-25"
    # an interval's dates are UTC dates: the same instant is on the 24th
    every_day = job(Interval(timedelta(days=1), start=slot), slot, exclude_dates=["2026-12-25"])
    [advance] = Planner("me", {FUNC}).plan(batch(every_day, slot, [])).advances
    assert advance.executions[0].status is ExecutionStatus.RUNNING


def test_a_slot_claimed_ahead_inside_a_window_is_left_for_its_time() -> None:
    sunday_db = MaintenanceWindow(name="sunday-db", **SUNDAY_DB)
    slot = SPRING + HOUR  # inside the window
    current = job(Interval(QUARTER, start=slot), slot)
    ahead = batch(current, slot - timedelta(seconds=1), [sunday_db], horizon=slot)
    assert Planner("me", {FUNC}).plan(ahead).advances == []
