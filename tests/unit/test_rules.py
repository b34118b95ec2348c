"""The scheduling rules of ``taskmgr.core.rules``, one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmgr import (
    Cron,
    Date,
    ExecutionStatus,
    ExecutionTrigger,
    Instance,
    InstanceStatus,
    Interval,
    InvalidInputError,
    InvalidKwargsError,
    Job,
    JobSource,
    OverlapPolicy,
)
from taskmgr.core.definition import build_definition
from taskmgr.core.models import SLOT_TRIGGERS
from taskmgr.core.rules import (
    RUN_WHILE_PAUSED,
    Admission,
    Liveness,
    admit,
    anchor,
    concurrency_value,
    first_slot,
    is_active_run,
    manual_admission,
    option_changes,
    resume_slot,
    run_group,
    same_schedule,
)
from taskmgr.core.triggers import Manual
from taskmgr.scheduling.sync import add_new_job
from taskmgr.storage.memory import MemoryStorage

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def job(trigger: Any, **options: Any) -> Job:
    storage = MemoryStorage()
    storage.open()
    definition = build_definition(key="k", func="f", trigger=trigger, options=options)
    return add_new_job(storage, definition, source=JobSource.API, fingerprint=None, now=NOW)


@pytest.mark.parametrize(
    ("status", "queued", "active"),
    [
        (ExecutionStatus.RUNNING, False, True),
        (ExecutionStatus.PENDING, False, True),  # a manual run or retry about to start
        (ExecutionStatus.PENDING, True, False),  # waits for a free run, holds none
        *((s, False, False) for s in ExecutionStatus if s.is_final),
    ],
)
def test_which_runs_count_against_max_instances(
    status: ExecutionStatus, queued: bool, active: bool
) -> None:
    assert is_active_run(status, queued) is active


@pytest.mark.parametrize(
    ("policy", "active", "trigger", "expected"),
    [
        (OverlapPolicy.SKIP, 0, ExecutionTrigger.SCHEDULE, Admission.RUN),
        (OverlapPolicy.SKIP, 1, ExecutionTrigger.SCHEDULE, Admission.SKIP),
        (OverlapPolicy.SKIP, 1, ExecutionTrigger.CATCHUP, Admission.QUEUE),  # backlog queues
        (OverlapPolicy.QUEUE, 1, ExecutionTrigger.SCHEDULE, Admission.QUEUE),
        (OverlapPolicy.ALLOW, 5, ExecutionTrigger.SCHEDULE, Admission.RUN),
    ],
)
def test_admission_of_a_slot(
    policy: OverlapPolicy, active: int, trigger: ExecutionTrigger, expected: Admission
) -> None:
    assert admit(policy, active=active, max_instances=1, trigger=trigger) is expected


def test_manual_admission_queues_limits_or_forces() -> None:
    assert manual_admission(OverlapPolicy.QUEUE, force=False) == (True, False)
    assert manual_admission(OverlapPolicy.SKIP, force=False) == (False, True)
    assert manual_admission(OverlapPolicy.ALLOW, force=False) == (False, False)
    for policy in OverlapPolicy:
        assert manual_admission(policy, force=True) == (False, False)


def test_runs_asked_for_still_start_while_paused_and_the_schedule_s_do_not() -> None:
    asked_for = {ExecutionTrigger.MANUAL, ExecutionTrigger.DEFERRED, ExecutionTrigger.BACKFILL}
    assert asked_for == RUN_WHILE_PAUSED
    # the schedule's own slots never start while paused; a backfilled one was asked for
    assert {ExecutionTrigger.BACKFILL} == RUN_WHILE_PAUSED & SLOT_TRIGGERS
    assert ExecutionTrigger.RETRY not in RUN_WHILE_PAUSED


def test_an_interval_without_start_is_anchored_at_now_others_are_kept() -> None:
    assert anchor(Interval(60), NOW) == Interval(60, start=NOW)
    started = Interval(60, start=NOW - timedelta(seconds=30))
    assert anchor(started, NOW) is started
    cron = Cron("0 * * * *")
    assert anchor(cron, NOW) is cron


def test_first_slot_keeps_a_past_date_due_and_goes_on_from_now_otherwise() -> None:
    past = Date(NOW - timedelta(days=1))
    assert first_slot(past, NOW) == past.at  # its misfire policy decides, not dropped
    assert first_slot(Cron("0 * * * *"), NOW) == NOW + timedelta(hours=1)
    assert first_slot(Interval(60, start=NOW), NOW) == NOW + timedelta(seconds=60)


def test_resume_slot_keeps_an_untaken_date_slot_and_never_revives_a_taken_one() -> None:
    untaken = job(Date(NOW + timedelta(minutes=1)))
    later = NOW + timedelta(hours=3)
    assert resume_slot(untaken, later) == NOW + timedelta(minutes=1)
    taken = untaken.model_copy(update={"next_run_at": None})
    assert resume_slot(taken, later) is None
    hourly = job(Cron("0 * * * *"))
    assert resume_slot(hourly, later) == later + timedelta(hours=1)  # from now, no burst


def test_same_schedule_ignores_the_anchor_of_an_interval_declared_without_one() -> None:
    stored = Interval(60, start=NOW)
    assert same_schedule(stored, Interval(60))
    assert not same_schedule(stored, Interval(61))
    assert not same_schedule(stored, Interval(60, start=NOW + timedelta(seconds=1)))
    assert same_schedule(Cron("0 * * * *"), Cron("0 * * * *"))


def test_option_changes_lists_what_differs_but_never_enabled() -> None:
    stored = job(Interval(60, start=NOW), max_retries=1)
    definition = build_definition(
        key="k",
        func="g",
        trigger=Interval(60),
        options={"max_retries": 3, "enabled": False},
    )
    assert option_changes(stored, definition) == {"max_retries": 3, "func": "g"}


def test_liveness_validates_its_timings() -> None:
    with pytest.raises(InvalidInputError, match="longer than heartbeat_interval"):
        Liveness(heartbeat_interval=5, heartbeat_timeout=5, sweep_interval=1)
    for bad in (0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(InvalidInputError, match="positive number"):
            Liveness(heartbeat_interval=bad, heartbeat_timeout=15, sweep_interval=1)  # type: ignore[arg-type]


def test_liveness_judges_instances_by_their_last_heartbeat() -> None:
    liveness = Liveness(heartbeat_interval=5, heartbeat_timeout=15, sweep_interval=5)
    assert liveness.dead_before(NOW) == NOW - timedelta(seconds=15)

    def instance(age: float, status: InstanceStatus = InstanceStatus.RUNNING) -> Instance:
        beat = NOW - timedelta(seconds=age)
        return Instance(
            id="i", hostname="h", pid=1, mode="embedded", status=status,
            started_at=beat, last_heartbeat=beat,
        )  # fmt: skip

    assert liveness.is_live(instance(15), NOW)
    assert not liveness.is_live(instance(15.001), NOW)
    assert not liveness.is_live(instance(0, InstanceStatus.STOPPED), NOW)
    # an instance claims only while its peers surely still see it alive
    assert liveness.may_claim(9.9)
    assert not liveness.may_claim(10.0)


@pytest.mark.parametrize(
    ("value", "text"),
    [("acme", '"acme"'), (42, "42"), (-1, "-1"), (True, "true"), (None, "null"),
     ("1", '"1"'), (1, "1"), ("café", '"café"'), ("", '""')],
)  # fmt: skip
def test_the_concurrency_value_is_canonical_json_of_a_scalar(value: object, text: str) -> None:
    assert concurrency_value(value, field="kwargs.customer") == text


def test_values_of_different_types_are_different_groups() -> None:
    texts = [concurrency_value(v, field="f") for v in (1, True, "1", "true", None, "null")]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize(
    "value", [1.5, [1], {"id": 1}, (1,), b"x", "x" * 254, 10**300, OverlapPolicy.QUEUE]
)
def test_a_value_that_cannot_name_a_group_is_refused_with_its_path(value: object) -> None:
    with pytest.raises(InvalidKwargsError) as refused:
        concurrency_value(value, field="kwargs.customer")
    assert refused.value.field == "kwargs.customer"


def test_the_longest_value_accepted_is_255_characters_of_json() -> None:
    assert len(concurrency_value("x" * 253, field="f")) == 255


def test_runs_count_per_value_only_for_a_task_with_a_concurrency_key() -> None:
    keyed = job(Manual(), max_instances=2, overlap_policy="queue", concurrency_key="customer")
    plain = job(Manual(), max_instances=2, overlap_policy="queue")
    assert run_group(keyed, '"a"') == (keyed.id, '"a"')
    assert run_group(keyed, '"a"') != run_group(keyed, '"b"')
    assert run_group(keyed, None) == (keyed.id, None)  # written before the key was set
    assert run_group(plain, '"a"') == run_group(plain, '"b"') == (plain.id, None)
