"""The clock the service reads. Injectable so tests (and ``taskmgr.testing``) control time."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

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


class DatabaseClock:
    """The host's clock corrected by its measured offset to the database's clock.

    Every instance judges due-ness and liveness by the database's time, so a host
    whose clock is skewed neither fires early nor declares a live peer dead.
    :meth:`calibrate` measures the offset (at start and at every heartbeat); between
    calibrations, time is the host's monotonic progress plus that offset.
    """

    #: Offsets above this are logged: the host's clock should be fixed.
    WARN_SKEW = 2.0

    def __init__(self, database_now: Callable[[], datetime]) -> None:
        self._database_now = database_now
        self._offset = timedelta(0)
        self._warned = False

    @property
    def offset(self) -> timedelta:
        return self._offset

    def calibrate(self) -> timedelta:
        before = datetime.now(UTC)
        database = self._database_now()
        after = datetime.now(UTC)
        # the database read its clock somewhere between before and after
        self._offset = database - (before + (after - before) / 2)
        skew = abs(self._offset.total_seconds())
        if skew > self.WARN_SKEW and not self._warned:
            logger.warning(
                "this host's clock is %.1fs off the database's; taskmgr uses the database's",
                self._offset.total_seconds(),
            )
        self._warned = skew > self.WARN_SKEW
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset
