"""A service replaced by another: with a ``handover_timeout`` the stopping one fires
until its successor is up (no gap); without one, the slots of the gap follow the
misfire policy once the next instance starts. Time is a fake clock; the stopping
service's loop runs in the background, and every wait is bounded."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr import (
    ExecutionStatus,
    InstanceStatus,
    InvalidInputError,
    SchedulerService,
    scheduled_job,
)
from taskmgr.core.models import Instance
from taskmgr.storage.memory import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
STARTS: collections.Counter[datetime] = collections.Counter()


@scheduled_job(interval=1, misfire_grace_time=3, coalesce=True)
def every_second() -> None:
    from taskmgr import current_execution

    context = current_execution()
    assert context is not None
    STARTS[context.scheduled_for] += 1


@scheduled_job(interval=1, misfire_grace_time=3, coalesce=False)
def every_second_each() -> None:
    every_second()


KEY = f"{__name__}.every_second"


@pytest.fixture(autouse=True)
def _fresh_starts() -> Iterator[None]:
    STARTS.clear()
    yield
    STARTS.clear()


def eventually(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


class WatchedStorage(MemoryStorage):
    """Tells when someone looked at the instances (a hand-over is under way)."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = threading.Event()

    def list_instances(self) -> list[Instance]:
        self.looked.set()
        return super().list_instances()


def firing(storage: MemoryStorage, clock: FakeClock, **options: float) -> SchedulerService:
    """A started service with its loop in the background, on the fake clock."""
    return SchedulerService(
        storage,
        jobs=[every_second],
        clock=clock,
        poll_interval=0.01,
        **options,  # type: ignore[arg-type]
    ).start()


def slot_rows(service: SchedulerService) -> list[tuple[datetime, str, str]]:
    page = service.list_executions(job_key=KEY, limit=500)
    return sorted((e.scheduled_for, e.status.value, e.trigger.value) for e in page.items)


def test_a_stopping_service_fires_until_a_newer_instance_is_up() -> None:
    clock, storage = FakeClock(START), WatchedStorage()
    old = firing(storage, clock, handover_timeout=60)
    stopper = threading.Thread(target=old.shutdown, name="stopper", daemon=True)
    stopper.start()
    try:
        assert storage.looked.wait(10), "the stopping service did not look for a successor"
        # Nobody else runs yet (the new process is still importing): the old one fires.
        for k in range(1, 4):
            clock.advance(1)
            done = [(START + j * SECOND, "success", "schedule") for j in range(1, k + 1)]
            eventually(f"slot {k} to run", lambda done=done: slot_rows(old) == done)
        assert stopper.is_alive()
        with make_test_service([every_second], clock=clock, storage=storage) as new:
            # The old one sees its successor and stops; nothing of it is left running.
            stopper.join(10)
            assert not stopper.is_alive()
            [me] = [i for i in new.list_instances() if i.id == old.instance_id]
            assert me.status is InstanceStatus.STOPPED
            clock.advance(1)
            [run] = new.run_due()
            assert run.owner == new.instance_id
            assert slot_rows(new) == [
                (START + k * SECOND, "success", "schedule") for k in range(1, 5)
            ]
    finally:
        old.shutdown(wait=False)
        stopper.join(10)
    assert sorted(STARTS) == [START + k * SECOND for k in range(1, 5)]
    assert set(STARTS.values()) == {1}


def test_a_stop_without_waiting_ends_a_hand_over_at_once() -> None:
    clock, storage = FakeClock(START), WatchedStorage()
    old = firing(storage, clock, handover_timeout=60)
    stopper = threading.Thread(target=old.shutdown, name="stopper", daemon=True)
    stopper.start()
    try:
        assert storage.looked.wait(10)
        old.shutdown(wait=False)
        stopper.join(10)
        assert not stopper.is_alive()
    finally:
        old.shutdown(wait=False)
        stopper.join(10)
    assert not old.running


def test_without_a_handover_timeout_a_service_stops_firing_at_once() -> None:
    clock, storage = FakeClock(START), WatchedStorage()
    old = firing(storage, clock)
    old.shutdown()  # returns without looking for a successor
    assert not storage.looked.is_set()
    assert not old.running


@pytest.mark.parametrize(
    ("job", "gap"),
    [
        (
            every_second,  # coalesce=True: the newest slot within the grace runs
            [*[("missed", "beyond")] * 3, *[("missed", "coalesced")] * 2, ("success", "catchup")],
        ),
        (
            every_second_each,  # coalesce=False: every slot within the grace runs
            [*[("missed", "beyond")] * 3, *[("success", "catchup")] * 3],
        ),
    ],
    ids=["coalesce", "no-coalesce"],
)
def test_the_slots_of_a_restart_gap_follow_the_misfire_policy_once(
    job: Callable[[], None], gap: list[tuple[str, str]]
) -> None:
    clock, storage = FakeClock(START), MemoryStorage()
    key = f"{__name__}.{job.__name__}"
    with make_test_service([job], clock=clock, storage=storage) as old:
        for _ in range(2):
            clock.advance(1)
            assert len(old.run_due()) == 1
    # Nothing runs for 6.5 s: slots 3-8 s fall due; 3, 4 and 5 s are later than the
    # 3 s misfire grace when the next instance starts at 8.5 s, 6, 7 and 8 s are not.
    clock.advance(6.5)
    with make_test_service([job], clock=clock, storage=storage) as new:
        while new.run_due():  # catch-ups queue behind each other (max_instances=1)
            pass
        rows = new.list_executions(job_key=key, limit=500).items
    by_slot = {e.scheduled_for: e for e in rows}
    assert len(by_slot) == len(rows) == 8  # one row per slot
    seen = []
    for k in range(3, 9):
        row = by_slot[START + k * SECOND]
        message = row.error_message or ""
        if row.status is ExecutionStatus.MISSED:
            seen.append(
                ("missed", "beyond" if "beyond the misfire grace" in message else "coalesced")
            )
        else:
            seen.append((row.status.value, row.trigger.value))
    assert seen == gap
    ran = [
        START + k * SECOND
        for k in range(3, 9)
        if by_slot[START + k * SECOND].status.value == "success"
    ]
    assert sorted(STARTS) == [START + SECOND, START + 2 * SECOND, *ran]
    assert set(STARTS.values()) == {1}  # none ran twice


def test_the_handover_timeout_comes_from_the_argument_or_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKMGR_HANDOVER_TIMEOUT", "7.5")
    assert SchedulerService(MemoryStorage()).handover_timeout == 7.5
    assert SchedulerService(MemoryStorage(), handover_timeout=0).handover_timeout == 0.0
    monkeypatch.delenv("TASKMGR_HANDOVER_TIMEOUT")
    assert SchedulerService(MemoryStorage()).handover_timeout == 0.0


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), True, "10"])
def test_a_bad_handover_timeout_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError) as refused:
        SchedulerService(MemoryStorage(), handover_timeout=bad)  # type: ignore[arg-type]
    assert refused.value.field == "handover_timeout"
