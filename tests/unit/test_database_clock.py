"""The database's clock as an instance knows it: readings bounded by their round trip.

A fake network and database drive :class:`DatabaseClock` on a fake monotonic clock, so
every reading's delays (the request held on the way in, the answer on the way out) and
every instant are exact.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr import Date, SchedulerService
from taskmgr.core.clock import DatabaseClock
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage import MemoryStorage

EPOCH = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)


class Network:
    """The host's monotonic clock, a database whose clock runs ``rate`` database seconds
    per host second from ``EPOCH`` (plus ``step``), and the delays of the next reading."""

    def __init__(self, *, skew: timedelta = timedelta(hours=2), rate: float = 1.0) -> None:
        self.monotonic = 1000.0
        self.skew = skew  # how far the host's wall clock is behind the database's
        self.rate = rate
        self.step = timedelta(0)  # the database's clock was set by this much
        self.request = self.answer = 0.0005  # a 1 ms round trip

    def clock(self, **options: float) -> DatabaseClock:
        return DatabaseClock(
            self.database_now,
            monotonic=lambda: self.monotonic,
            host_now=lambda: self.true_now() - self.skew,
            **options,  # type: ignore[arg-type]
        )

    def true_now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.monotonic * self.rate) + self.step

    def database_now(self) -> datetime:
        self.monotonic += self.request
        value = self.true_now()  # the database reads its clock
        self.monotonic += self.answer
        return value

    def reading(self, request: float, answer: float, clock: DatabaseClock) -> None:
        self.request, self.answer = request, answer
        clock.calibrate()
        self.request = self.answer = 0.0005

    def wait(self, seconds: float) -> None:
        self.monotonic += seconds


def behind(network: Network, clock: DatabaseClock) -> float:
    """How far the clock is behind the database's, in seconds (negative: ahead)."""
    return (network.true_now() - clock.now()).total_seconds()


def test_before_any_reading_time_is_the_hosts() -> None:
    network = Network()
    clock = network.clock()
    assert clock.now() == network.true_now() - network.skew
    assert clock.offset == timedelta(0)
    clock.calibrate()
    assert abs(clock.offset - network.skew) <= MS


@pytest.mark.parametrize("max_round_trip", [DatabaseClock.MAX_ROUND_TRIP, 60.0])
def test_a_reading_held_up_by_the_network_does_not_move_the_clock(
    max_round_trip: float, caplog: pytest.LogCaptureFixture
) -> None:
    # The reported case: the network drops packets for 20 s, the heartbeat's query
    # waits all that time and is answered at once. Taking the midpoint made the clock
    # 10 s fast: 20 slots fired 9.2 s early, 180 future ones were marked missed.
    network = Network()
    clock = network.clock(max_round_trip=max_round_trip)
    for _ in range(3):
        clock.calibrate()
        network.wait(5)
    before = clock.offset
    with caplog.at_level(logging.WARNING, logger="taskmgr.scheduler"):
        network.reading(request=20.0, answer=0.0, clock=clock)
    assert abs(clock.offset - before) <= MS  # kept (60 s: used, and it proves nothing new)
    assert 0 <= behind(network, clock) <= 0.001
    assert ("discarded" in caplog.text) is (max_round_trip < 20)
    # held on the way back instead: the same
    network.reading(request=0.0, answer=20.0, clock=clock)
    assert 0 <= behind(network, clock) <= 0.001


def test_the_clock_is_never_ahead_and_lags_by_at_most_the_best_round_trip() -> None:
    network = Network()
    clock = network.clock()
    draw = random.Random(20260301)
    best = float("inf")
    for _ in range(200):
        # asymmetric delays, some beyond the limit
        request, answer = draw.expovariate(1 / 0.05), draw.expovariate(1 / 0.05)
        if draw.random() < 0.1:
            request += draw.uniform(1, 30)
        network.reading(request, answer, clock)
        if request + answer <= clock.max_round_trip:
            best = min(best, request + answer)
        lag = behind(network, clock)
        assert lag >= 0  # never ahead: no slot starts early by the database's clock
        assert lag <= best + 1e-6
        network.wait(draw.uniform(0, 2))
        assert behind(network, clock) == pytest.approx(lag, abs=1e-6)
    assert best < 0.01


@pytest.mark.parametrize("step", [timedelta(seconds=-10), timedelta(seconds=10)])
def test_the_database_clock_being_set_is_followed_at_the_next_reading(step: timedelta) -> None:
    network = Network()
    clock = network.clock()
    for _ in range(4):
        clock.calibrate()
        network.wait(1)
    network.step = step
    clock.calibrate()
    assert 0 <= behind(network, clock) <= 0.001
    for _ in range(10):  # the readings from before the change are forgotten
        network.wait(1)
        clock.calibrate()
        assert 0 <= behind(network, clock) <= 0.001


def test_a_slow_first_reading_is_used_until_a_good_one_arrives() -> None:
    network = Network()
    clock = network.clock()
    network.reading(request=0.0, answer=5.0, clock=clock)  # over the limit, but all there is
    assert 0 <= behind(network, clock) <= 5.0  # late, never early
    network.reading(request=0.0, answer=0.0, clock=clock)
    assert behind(network, clock) == pytest.approx(0, abs=1e-6)
    network.reading(request=0.0, answer=5.0, clock=clock)  # now it is discarded
    assert behind(network, clock) == pytest.approx(0, abs=1e-6)


def test_between_readings_time_moves_with_the_monotonic_clock() -> None:
    network = Network()
    clock = network.clock()
    clock.calibrate()
    start = clock.now()
    network.skew += timedelta(hours=1)  # the host's wall clock is set back an hour
    network.wait(3)
    assert clock.now() - start == timedelta(seconds=3)


def test_a_drifting_host_clock_keeps_within_a_round_trip() -> None:
    network = Network(rate=1.0005)  # the database's clock runs 500 ppm faster
    clock = network.clock()
    for _ in range(50):
        clock.calibrate()
        assert abs(behind(network, clock)) <= 0.001
        network.wait(5)
    network = Network(rate=0.9995)  # and slower
    clock = network.clock()
    for _ in range(50):
        clock.calibrate()
        assert abs(behind(network, clock)) <= 0.001
        network.wait(5)


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_round_trip", 0), ("max_round_trip", -1.0), ("samples", 0), ("samples", True)],
)
def test_bad_settings_are_refused(option: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=option):
        DatabaseClock(lambda: EPOCH, **{option: value})  # type: ignore[arg-type]


def work() -> None:
    pass


def test_the_scheduler_caps_its_claims_at_the_database_clock() -> None:
    # Even a clock fooled into running an hour ahead starts nothing early: with the
    # database's clock, each claim is capped at the database's own time (here the
    # memory storage's, the host's).
    fooled = DatabaseClock(lambda: datetime.now(UTC) + timedelta(hours=1))
    service = SchedulerService(MemoryStorage(), jobs=[work], clock=fooled, background=False)
    with service:
        now = datetime.now(UTC)
        service.create_job("due", work, trigger=Date(now - timedelta(seconds=1)))
        service.create_job("soon", work, trigger=Date(now + timedelta(minutes=30)))
        assert fooled.offset > timedelta(minutes=59)
        assert [execution.job_key for execution in service.run_due()] == ["due"]
        assert [e.job_key for e in service.list_executions().items] == ["due"]
