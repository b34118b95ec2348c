"""The clock the service reads. Injectable so tests (and ``taskmgr.testing``) control time."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from taskmgr.exceptions import InvalidInputError

__all__ = ["Clock", "DatabaseClock", "SystemClock", "utcnow"]

logger = logging.getLogger("taskmgr.scheduler")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class _Reading:
    """What one reading of the database's clock proves: the database's time when the
    host's monotonic clock read zero lies in ``[low, high]`` (``high - low`` is the
    round trip)."""

    low: datetime
    high: datetime


class DatabaseClock:
    """The database's clock, as this host knows it between readings.

    Every instance judges due-ness and liveness by the database's time, so a host
    whose clock is skewed neither fires early nor declares a live peer dead.
    :meth:`calibrate` reads the database's clock (at start and at every heartbeat);
    between readings, time moves with the host's monotonic clock.

    A reading proves a range, not a point: the database read its clock at some moment
    between sending the query and receiving the answer. The clock keeps the last
    ``samples`` readings whose round trip took at most ``max_round_trip`` seconds
    (slower ones are discarded), drops those the newest contradicts (the database's
    clock was set, or drifted), and reads the **latest time they prove the database's
    clock has reached**. Hence:

    * it never runs ahead of the database's clock (but for the drift of the host's
      monotonic clock since the last reading) and lags it by at most the shortest
      round trip kept;
    * a slow round trip (a stalled network) cannot move it: its range holds the
      current value, and beyond ``max_round_trip`` it is not even kept;
    * a reading moves it only as far as the reading proves it wrong: forward to the
      earliest time the answer allows, or back when the answer shows it ahead.

    Until a reading within ``max_round_trip`` arrives, a slower one is used as it is
    (its earliest time: late, never early); before any reading, time is the host's.
    """

    #: Offsets above this are logged: the host's clock should be fixed.
    WARN_SKEW = 2.0
    #: Readings whose round trip took longer (seconds) are discarded.
    MAX_ROUND_TRIP = 1.0
    #: How many recent readings are kept.
    SAMPLES = 8

    def __init__(
        self,
        database_now: Callable[[], datetime],
        *,
        max_round_trip: float = MAX_ROUND_TRIP,
        samples: int = SAMPLES,
        monotonic: Callable[[], float] = time.monotonic,
        host_now: Callable[[], datetime] = utcnow,
    ) -> None:
        if not max_round_trip > 0:
            raise InvalidInputError(
                f"must be a positive number of seconds, got {max_round_trip!r}",
                field="max_round_trip",
            )
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InvalidInputError(f"must be a positive integer, got {samples!r}", field="samples")
        self._database_now = database_now
        self.max_round_trip = float(max_round_trip)
        self._monotonic = monotonic
        self._host_now = host_now
        self._readings: deque[_Reading] = deque(maxlen=samples)
        #: The database's time when the monotonic clock read zero; None before a reading.
        self._base: datetime | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._discarding = False

    @property
    def offset(self) -> timedelta:
        """How far the database's clock is ahead of this host's wall clock."""
        return self.now() - self._host_now()

    def calibrate(self) -> timedelta:
        """Read the database's clock once and correct this clock by what the reading
        proves; returns :attr:`offset`."""
        with self._lock:
            sent = self._monotonic()
            database = self._database_now()
            received = self._monotonic()
            reading = _Reading(
                low=database - timedelta(seconds=received),
                high=database - timedelta(seconds=sent),
            )
            round_trip = received - sent
            if round_trip > self.max_round_trip:
                if not self._discarding:
                    logger.warning(
                        "a reading of the database's clock took %.3fs (limit %.3fs): "
                        "discarded, the clock keeps its value",
                        round_trip,
                        self.max_round_trip,
                    )
                self._discarding = True
                if not self._readings:
                    self._base = reading.low  # nothing better yet: late, never early
            else:
                self._discarding = False
                self._readings.append(reading)
                estimate, previous = self._estimate(), self._base
                # a value the reading does not contradict is kept: the clock moves back
                # only when an answer shows it ahead
                if previous is not None and estimate < previous <= reading.high:
                    estimate = previous
                self._base = estimate
        offset = self.offset
        skew = abs(offset.total_seconds())
        if skew > self.WARN_SKEW and not self._warned:
            logger.warning(
                "this host's clock is %.1fs off the database's; taskmgr uses the database's",
                offset.total_seconds(),
            )
        self._warned = skew > self.WARN_SKEW
        return offset

    def _estimate(self) -> datetime:
        """The largest lower bound of the newest reading and the older ones consistent
        with it (together); the older readings it contradicts are forgotten."""
        kept = [self._readings[-1]]
        low, high = kept[0].low, kept[0].high
        for reading in reversed(list(self._readings)[:-1]):
            if reading.low > high or reading.high < low:
                break
            low, high = max(low, reading.low), min(high, reading.high)
            kept.append(reading)
        if len(kept) < len(self._readings):
            self._readings = deque(reversed(kept), maxlen=self._readings.maxlen)
        return low

    def now(self) -> datetime:
        base = self._base
        if base is None:
            return self._host_now()
        return base + timedelta(seconds=self._monotonic())
