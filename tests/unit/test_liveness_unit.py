"""The database clock correction and the instance's own liveness check."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr.core.clock import DatabaseClock
from taskmgr.core.rules import Liveness
from taskmgr.scheduling.maintenance import Maintenance
from taskmgr.storage.memory import MemoryStorage
from taskmgr.testing import FakeClock


def test_database_clock_follows_the_database_not_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    skew = timedelta(hours=2)  # the host runs two hours behind the database
    clock = DatabaseClock(lambda: datetime.now(UTC) + skew)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)  # not calibrated yet
    with caplog.at_level(logging.WARNING, logger="taskmgr.scheduler"):
        clock.calibrate()
    assert abs(clock.offset - skew) < timedelta(seconds=1)
    assert abs(clock.now() - (datetime.now(UTC) + skew)) < timedelta(seconds=1)
    assert "off the database's" in caplog.text


def maintenance(timeout: float = 15.0, interval: float = 5.0) -> Maintenance:
    return Maintenance(
        MemoryStorage(),
        FakeClock(),
        liveness=Liveness(
            heartbeat_interval=interval,
            heartbeat_timeout=timeout,
            sweep_interval=5.0,
            instance_retention=3600.0,
        ),
        instance_id="me",
        register=lambda: None,
    )


def test_an_instance_whose_heartbeat_is_stale_stops_claiming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("taskmgr.scheduling.maintenance.time.monotonic", lambda: now[0])
    m = maintenance()
    m.heartbeat()
    assert m.alive()
    now[0] += 9.9  # timeout 15 - interval 5 = 10 s of margin
    assert m.alive()
    now[0] += 0.2
    assert not m.alive()  # it froze, or lost the database: peers may reap it soon
    m.heartbeat()
    assert m.alive()


def test_no_sweep_until_heartbeats_have_been_healthy_for_a_whole_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("taskmgr.scheduling.maintenance.time.monotonic", lambda: now[0])
    m = maintenance()
    swept: list[int] = []
    monkeypatch.setattr(m.storage, "reap", lambda **_: swept.append(1) or [])
    assert m.sweep() == 0 and swept == []  # never heartbeated yet
    m.heartbeat()
    now[0] += 14.9
    m.sweep()
    assert swept == []  # peers may not have heartbeated since we came (back)
    now[0] += 0.2
    m.sweep()
    assert swept == [1]
    monkeypatch.setattr(m.storage, "heartbeat", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        m.heartbeat()  # the database went away
    monkeypatch.undo()
    monkeypatch.setattr("taskmgr.scheduling.maintenance.time.monotonic", lambda: now[0])
    monkeypatch.setattr(m.storage, "reap", lambda **_: swept.append(2) or [])
    m.heartbeat()
    m.sweep()
    assert swept == [1]  # the clock starts again


def test_executions_claimed_just_before_a_freeze_are_given_up_not_started() -> None:
    from taskmgr import ExecutionStatus
    from taskmgr.dispatch.base import Dispatcher
    from taskmgr.scheduling.loop import SchedulerLoop
    from taskmgr.scheduling.planner import Planner
    from taskmgr.storage.base import Outcome

    clock = FakeClock()
    storage = MemoryStorage()
    from taskmgr.core.models import JobDefinition, JobSource
    from taskmgr.core.triggers import Interval
    from taskmgr.scheduling.sync import add_new_job

    add_new_job(
        storage,
        JobDefinition(key="k", func="f", trigger=Interval(60)),
        source=JobSource.API,
        fingerprint=None,
        now=clock.now(),
    )
    clock.advance(60)

    class Recorder(Dispatcher):
        dispatched: list[object] = []

        def start(self, context: object) -> None: ...
        def dispatch(self, claimed: object) -> None:
            self.dispatched.append(claimed)

        def capacity(self) -> int:
            return 10

        def shutdown(self, *, wait: bool = True) -> None: ...

    answers = iter([True, False])  # alive before the claim, frozen right after it
    reported: list[Outcome] = []
    loop = SchedulerLoop(
        storage,
        Recorder(),
        Planner("me", {"f"}),
        clock,
        owner="me",
        batch_size=10,
        poll_interval=1,
        may_claim=lambda: next(answers),
        report=reported.append,
    )
    assert loop.tick() == []
    assert Recorder.dispatched == []
    [outcome] = reported
    assert outcome.status is ExecutionStatus.CANCELLED
    assert "stopped heartbeating" in (outcome.error_message or "")
