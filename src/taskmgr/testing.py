"""Helpers for testing your own jobs deterministically.

::

    from taskmgr.testing import FakeClock, make_test_service

    def test_report_runs_every_hour():
        clock = FakeClock("2026-01-05T08:59:00+00:00")
        with make_test_service(jobs=[send_report], clock=clock) as service:
            clock.advance(minutes=1)
            [execution] = service.run_due()
            assert execution.status == "success"

``make_test_service`` gives a service on :class:`~taskmgr.storage.MemoryStorage`
that fires only when you call ``run_due()``, at the time of the clock you move.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from taskmgr.core.validation import ensure_aware
from taskmgr.service import SchedulerService
from taskmgr.storage.base import Storage
from taskmgr.storage.memory import MemoryStorage

__all__ = ["FakeClock", "make_test_service"]


class FakeClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: datetime | str | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        elif isinstance(start, str):
            start = datetime.fromisoformat(start)
        self._now = ensure_aware(start, "start").astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float | None = None, **units: float) -> datetime:
        """Move forward by a timedelta, seconds, or ``timedelta`` keywords
        (``advance(minutes=5)``); returns the new time."""
        step = (
            delta
            if isinstance(delta, timedelta)
            else timedelta(seconds=delta or 0) + timedelta(**units)
        )
        if step < timedelta(0):
            raise ValueError("a FakeClock only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware), forward or back."""
        with self._lock:
            self._now = ensure_aware(when, "when").astimezone(UTC)


def make_test_service(
    jobs: Iterable[Callable[..., Any] | types.ModuleType] = (),
    *,
    clock: FakeClock | None = None,
    storage: Storage | None = None,
    **options: Any,
) -> SchedulerService:
    """A service for tests: in-memory storage, a fake clock, no background thread."""
    return SchedulerService(
        storage if storage is not None else MemoryStorage(),
        jobs=jobs,
        clock=clock if clock is not None else FakeClock(),
        background=False,
        **options,
    )
