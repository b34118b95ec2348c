"""The database clock correction and the instance's own liveness check."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr._clock import DatabaseClock
from taskmgr._maintenance import Maintenance
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
        instance_id="me",
        register=lambda: None,
        heartbeat_interval=interval,
        heartbeat_timeout=timeout,
        sweep_interval=5.0,
        instance_retention=3600.0,
    )


def test_an_instance_whose_heartbeat_is_stale_stops_claiming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("taskmgr._maintenance.time.monotonic", lambda: now[0])
    m = maintenance()
    m.heartbeat()
    assert m.alive()
    now[0] += 9.9  # timeout 15 - interval 5 = 10 s of margin
    assert m.alive()
    now[0] += 0.2
    assert not m.alive()  # it froze, or lost the database: peers may reap it soon
    m.heartbeat()
    assert m.alive()
