"""Fixtures shared by every test package.

``storage`` is an open, empty storage on each backend (memory, SQLite, PostgreSQL);
``open_storage()`` opens another handle on the same database (a second process, as
far as the database can tell: its own engine and connection pool). PostgreSQL tests
each get a fresh schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from xdist.scheduler import LoadScopeScheduling

from taskmgr.storage import MemoryStorage, Storage
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from tests.reliability import SUMMARY_PROPERTY
from tests.services import require_postgres

#: ``pytester`` runs pytest on generated test files (the test kit's plugin tests).
pytest_plugins = ("pytester",)

OpenStorage = Callable[[], Storage]


BACKENDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_storage(backend: str, tmp_path: Path) -> Iterator[OpenStorage]:
    opened: list[Storage] = []
    cleanup: list[Callable[[], None]] = []

    if backend == "memory":
        shared = MemoryStorage()

        def make() -> Storage:
            return shared

    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'taskmgr.db'}"

        def make() -> Storage:
            return SQLAlchemyStorage(url)

    else:
        url = require_postgres()
        schema = f"tm_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url, poolclass=sa.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

        def drop() -> None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()

        cleanup.append(drop)

        def make() -> Storage:
            return SQLAlchemyStorage(url, schema=schema)

    def open_one() -> Storage:
        storage = make()
        storage.open()
        opened.append(storage)
        return storage

    try:
        yield open_one
    finally:
        for storage in reversed(opened):
            storage.close()
        for step in cleanup:
            step()


@pytest.fixture
def storage(open_storage: OpenStorage) -> Storage:
    return open_storage()


# -- how a parallel run shares the tests ------------------------------------------------
# The suite runs in several processes (pytest-xdist), each taking the next test as it
# finishes. Two kinds of tests start processes of their own and load the machine in
# bursts: the reliability scenarios (scheduler processes, a restarted database) and the
# Celery tests (worker processes, a restarted broker). Each kind runs in one process,
# one test after the other, so two such bursts never meet; the other tests share the
# remaining processes one by one. Among those, the long tests (marked ``slow``, and the
# benchmark smoke tests) come first: collected last, one would run alone at the end
# while the others idle. The sort is stable: the order among the long ones, and among
# the others, stays as collected.

_GROUPS = {"reliability": "processes", "celery": "celery"}


class _Grouped(LoadScopeScheduling):
    """Each test is its own unit of work, except those of a group: one unit each."""

    def _split_scope(self, nodeid: str) -> str:
        parts = nodeid.split("/")
        return _GROUPS.get(parts[1], nodeid) if len(parts) > 2 else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> _Grouped | None:
    return _Grouped(config, log) if config.getvalue("dist") == "load" else None


def _long(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None or item.path.name.startswith(
        "test_benchmarks"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not _long(item))


# -- the reliability scenarios' summary, repeated at the end of the run -----------------
# Collected from the test reports (not module state): in a parallel run the scenarios
# run in worker processes and only their reports reach this one.
_SUMMARY: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _SUMMARY.extend(str(v) for k, v in report.user_properties if k == SUMMARY_PROPERTY)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARY:
        terminalreporter.section("taskmgr reliability summary")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
