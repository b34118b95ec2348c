"""pytest fixtures for the tests of an application's own jobs.

Installed with taskmgr: pytest loads this plugin by itself (entry point ``pytest11``),
so no ``conftest.py`` line is needed (``-p no:taskmgr`` leaves it out). Every fixture
is function-scoped, and every name starts with ``taskmgr_``:

- ``taskmgr_clock``: a :class:`~taskmgr.testing.FakeClock` (2026-01-01 00:00 UTC).
- ``taskmgr_jobs``: the functions and modules the services register; empty. Override
  it (a fixture of the same name in your ``conftest.py`` or test module).
- ``taskmgr_service``: a started service from
  :func:`~taskmgr.testing.make_test_service` on ``MemoryStorage``, with the clock
  and the jobs above; shut down after the test.
- ``taskmgr_sqlite_service``: the same on SQLite, in the test's ``tmp_path``.
- ``taskmgr_async_service``: ``taskmgr_service`` as an
  :class:`~taskmgr.AsyncSchedulerService`, for ``await ....run_due()``.

The services are started outside any event loop, so their ``async def`` jobs run on a
loop of their own: ``run_due()`` works the same from sync and ``async def`` tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from taskmgr.service import AsyncSchedulerService, SchedulerService
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.testing import FakeClock, make_test_service

__all__ = [
    "taskmgr_async_service",
    "taskmgr_clock",
    "taskmgr_jobs",
    "taskmgr_service",
    "taskmgr_sqlite_service",
]

Jobs = list[Callable[..., Any] | ModuleType]


@pytest.fixture
def taskmgr_clock() -> FakeClock:
    """A clock that moves only when the test moves it (2026-01-01 00:00 UTC)."""
    return FakeClock()


@pytest.fixture
def taskmgr_jobs() -> Jobs:
    """What ``taskmgr_service`` and ``taskmgr_sqlite_service`` register: override it."""
    return []


@pytest.fixture
def taskmgr_service(taskmgr_clock: FakeClock, taskmgr_jobs: Jobs) -> Iterator[SchedulerService]:
    """A started test service on ``MemoryStorage``: nothing fires until ``run_due()``."""
    with make_test_service(taskmgr_jobs, clock=taskmgr_clock) as service:
        yield service


@pytest.fixture
def taskmgr_sqlite_service(
    taskmgr_clock: FakeClock, taskmgr_jobs: Jobs, tmp_path: Path
) -> Iterator[SchedulerService]:
    """A started test service on SQLite (``tmp_path / "taskmgr.db"``)."""
    storage = SQLAlchemyStorage(f"sqlite:///{tmp_path / 'taskmgr.db'}")
    try:
        with make_test_service(taskmgr_jobs, clock=taskmgr_clock, storage=storage) as service:
            yield service
    finally:
        storage.close()


@pytest.fixture
def taskmgr_async_service(taskmgr_service: SchedulerService) -> AsyncSchedulerService:
    """``taskmgr_service``, awaitable: ``await taskmgr_async_service.run_due()``."""
    return AsyncSchedulerService(taskmgr_service)
