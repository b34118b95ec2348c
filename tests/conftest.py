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

import pytest
import sqlalchemy as sa

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


# -- the long tests first ------------------------------------------------------------
# The suite runs in several processes, each taking the next tests as it finishes: a
# long test collected last would run alone at the end while the others idle. So the
# tests marked ``slow`` and the benchmark smoke tests come first (a stable sort: the
# order among the long ones, and among the others, stays as collected).


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
