"""The hand-over of a stopping instance (``scheduling/handover.py``): who counts as its
successor, and when it stops firing. Time is a fake clock moved by the hand-over's
own waits, so every case is decided without sleeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr.core.models import Instance, InstanceStatus, JobDefinition, JobSource, JobState
from taskmgr.core.rules import Liveness
from taskmgr.core.triggers import Interval
from taskmgr.scheduling.handover import Handover, successor
from taskmgr.storage.memory import MemoryStorage
from taskmgr.testing import FakeClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIVENESS = Liveness(heartbeat_interval=5.0, heartbeat_timeout=15.0, sweep_interval=5.0)
ME = "host:1:me"


def instance(
    instance_id: str,
    *,
    started: float = 0.0,
    beat: float | None = None,
    status: InstanceStatus = InstanceStatus.RUNNING,
    mode: str = "embedded",
) -> Instance:
    """An instance started ``started`` seconds after T0, its last heartbeat ``beat``
    seconds after T0 (default: when it started)."""
    return Instance(
        id=instance_id,
        hostname="host",
        pid=1,
        mode=mode,
        status=status,
        started_at=T0 + timedelta(seconds=started),
        last_heartbeat=T0 + timedelta(seconds=started if beat is None else beat),
    )


@pytest.mark.parametrize(
    ("other", "takes_over"),
    [
        (instance("newer", started=-10), True),
        (instance("older", started=-40, beat=0), False),  # may be stopping in the same reload
        (instance("newer-worker", started=-10, mode="worker"), False),  # claims nothing
        (instance("newer-stopped", started=-10, status=InstanceStatus.STOPPED), False),
        (instance("newer-dead", started=-10, status=InstanceStatus.DEAD), False),
        (instance("newer-stale", started=-20, beat=-16), False),  # silent past the timeout
    ],
    ids=lambda value: value.id if isinstance(value, Instance) else str(value),
)
def test_a_successor_is_a_newer_live_instance_that_claims(
    other: Instance, takes_over: bool
) -> None:
    me = instance(ME, started=-30, beat=0)
    found = successor(ME, [me, other], T0, LIVENESS)
    assert (found == other) is takes_over


def test_instances_started_at_the_same_instant_are_ordered_by_id() -> None:
    # Of instances stopping together, exactly one has no successor: it bridges the gap.
    together = [instance(f"host:1:{name}") for name in ("a", "b", "c")]
    alone = [i.id for i in together if successor(i.id, together, T0, LIVENESS) is None]
    assert alone == ["host:1:c"]


def test_without_its_own_row_any_other_live_instance_takes_over() -> None:
    other = instance("other", started=-60, beat=0)
    assert successor(ME, [other], T0, LIVENESS) == other
    assert successor(ME, [], T0, LIVENESS) is None


Script = Callable[[datetime], None]


def hand_over(
    storage: MemoryStorage,
    clock: FakeClock,
    *,
    timeout: float = 10.0,
    script: Script | None = None,
) -> tuple[str, list[float]]:
    """Run a hand-over of ME whose every wait moves the clock by that long, then runs
    ``script(now)``; returns why it ended and the waits."""
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now = clock.advance(seconds)
        if script is not None:
            script(now)

    handover = Handover(
        storage,
        clock,
        LIVENESS,
        instance_id=ME,
        timeout=timeout,
        poll_interval=1.0,
        wait=wait,
    )
    return handover(), waits


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def storage() -> MemoryStorage:
    """ME, running since a minute, and a job due every second."""
    storage = MemoryStorage()
    storage.register_instance(instance(ME, started=-60, beat=0))
    storage.add_job(
        JobDefinition(key="every-second", func="work", trigger=Interval(1, start=T0)),
        source=JobSource.CODE,
        state=JobState.ACTIVE,
        next_run_at=T0 + timedelta(seconds=1),
        fingerprint="fp",
        now=T0,
    )
    return storage


def test_it_fires_until_its_timeout_when_no_newer_instance_comes(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    def older_peer_is_up(now: datetime) -> None:
        storage.register_instance(instance("older", started=-120, beat=(now - T0).seconds))

    reason, waits = hand_over(storage, clock, timeout=3.5, script=older_peer_is_up)
    assert "no newer instance within the hand-over timeout of 3.5s" in reason
    assert waits == [1.0, 1.0, 1.0, 0.5]
    assert clock.now() == T0 + timedelta(seconds=3.5)


def test_it_stops_firing_once_a_newer_instance_is_up(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    def successor_starts(now: datetime) -> None:
        if now >= T0 + timedelta(seconds=2):  # the new process finished importing
            storage.register_instance(instance("new", started=2))

    reason, waits = hand_over(storage, clock, script=successor_starts)
    assert reason == "instance new took over"
    assert waits == [1.0, 1.0]


def test_it_stops_at_once_when_nothing_is_due_before_its_deadline(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    storage.update_job("every-second", {"next_run_at": T0 + timedelta(seconds=11)}, now=T0)
    reason, waits = hand_over(storage, clock, timeout=10.0)
    assert reason == "nothing is due before the hand-over timeout"
    assert waits == []
    # a slot due at 9 s keeps it firing until its loop claimed that slot
    storage.update_job("every-second", {"next_run_at": T0 + timedelta(seconds=9)}, now=T0)

    def loop_claims(now: datetime) -> None:
        if now >= T0 + timedelta(seconds=9):
            storage.update_job(
                "every-second", {"next_run_at": now + timedelta(seconds=30)}, now=now
            )

    reason, waits = hand_over(storage, clock, timeout=10.0, script=loop_claims)
    assert reason == "nothing is due before the hand-over timeout"
    assert sum(waits) == 9.0


def test_no_timeout_is_no_hand_over(storage: MemoryStorage, clock: FakeClock) -> None:
    assert hand_over(storage, clock, timeout=0.0) == ("no hand-over", [])


def test_a_cancelled_hand_over_ends_at_its_next_look(
    storage: MemoryStorage, clock: FakeClock
) -> None:
    handover = Handover(storage, clock, LIVENESS, instance_id=ME, timeout=10.0, poll_interval=1.0)
    handover.cancel()
    assert handover() == "hand-over cancelled"


def test_a_storage_error_ends_the_hand_over(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(MemoryStorage):
        def list_instances(self) -> list[Instance]:
            raise ConnectionError("the database is down")

    handover = Handover(Down(), clock, LIVENESS, instance_id=ME, timeout=10.0, poll_interval=1.0)
    with caplog.at_level(logging.ERROR, logger="taskmgr.scheduler"):
        assert handover() == "failed"
    assert "hand-over of instance host:1:me failed" in caplog.text
