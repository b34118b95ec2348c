"""Helpers for testing your own jobs deterministically, from sync and async tests.

::

    from taskmgr.testing import FakeClock, make_test_service

    def test_report_runs_every_hour():
        clock = FakeClock("2026-01-05T08:59:00+00:00")
        with make_test_service(jobs=[send_report], clock=clock) as service:
            clock.advance(minutes=1)
            [execution] = service.run_due()
            assert execution.status == "success"

``make_test_service`` gives a service on :class:`~taskmgr.storage.MemoryStorage`
that fires only when you call ``run_due()``, at the time of the clock you move. In an
``async def`` test, await it: ``AsyncSchedulerService(service).run_due()`` (the
``async def`` jobs of a service started on the test's loop run there, while it
waits). The pytest plugin (:mod:`taskmgr.pytest_plugin`) gives ready fixtures.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from taskmgr.core.validation import ensure_aware
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.exceptions import InvalidDatetimeError
from taskmgr.service import SchedulerService
from taskmgr.storage.base import Storage
from taskmgr.storage.memory import MemoryStorage

__all__ = ["FakeClock", "make_test_service"]

#: Where a :class:`FakeClock` starts unless told.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _instant(value: object, field: str) -> datetime:
    """An aware ``datetime``, or an ISO 8601 string with an offset (``Z`` too), in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidDatetimeError(
                f"not an ISO 8601 datetime: {value!r} (e.g. '2026-01-05T08:59:00+00:00')",
                field=field,
            ) from None
    return ensure_aware(value, field).astimezone(UTC)


def _step(delta: object, units: dict[str, float]) -> timedelta:
    """``delta`` (a ``timedelta`` or seconds) plus ``timedelta`` keywords."""
    if delta is None:
        step = timedelta(0)
    elif isinstance(delta, timedelta):
        step = delta
    elif isinstance(delta, int | float) and not isinstance(delta, bool):
        step = timedelta(seconds=delta)
    else:
        raise TypeError(f"expected a timedelta or seconds, got {type(delta).__name__}")
    return step + timedelta(**units)


class FakeClock:
    """A clock that only moves when told to. Thread-safe.

    Every method that takes a time takes the same forms: an aware ``datetime`` or an
    ISO 8601 string with an offset (``"2026-01-05T08:59:00Z"``); a naive one is
    refused (:class:`~taskmgr.InvalidDatetimeError`), as everywhere in taskmgr.
    """

    def __init__(self, start: datetime | str | None = None) -> None:
        self._now = DEFAULT_START if start is None else _instant(start, "start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float | None = None, **units: float) -> datetime:
        """Move forward by a ``timedelta`` or seconds, plus any ``timedelta`` keywords
        (``advance(minutes=5)``, ``advance(90)``, ``advance(timedelta(hours=1),
        minutes=30)``); returns the new time. :raises ValueError: a step back."""
        step = _step(delta, units)
        if step < timedelta(0):
            raise ValueError("a FakeClock only moves forward (set() jumps anywhere)")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: datetime | str) -> datetime:
        """Jump to ``when``, forward or back; returns it (in UTC)."""
        instant = _instant(when, "when")
        with self._lock:
            self._now = instant
            return instant

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()!r})"


def make_test_service(
    jobs: Iterable[Callable[..., Any] | types.ModuleType] = (),
    *,
    clock: FakeClock | None = None,
    storage: Storage | None = None,
    **options: Any,
) -> SchedulerService:
    """A service for tests: in-memory storage, a fake clock, no background thread, and
    jobs run in this process (an ``InlineDispatcher``, whatever ``TASKMGR_DISPATCHER``
    says) unless ``options`` name a ``dispatcher``. Nothing fires until ``run_due()``."""
    options.setdefault("dispatcher", InlineDispatcher())
    return SchedulerService(
        storage if storage is not None else MemoryStorage(),
        jobs=jobs,
        clock=clock if clock is not None else FakeClock(),
        background=False,
        **options,
    )
