"""How many connections one instance holds on PostgreSQL, as the server sees them
(``pg_stat_activity``, by the connections' ``application_name``): the numbers
``docs/deployment.md`` documents. Idle: two, one ``LISTEN`` connection and one pooled
that the loop and the heartbeat take turns on. Busy: never more than
``max_connections``. Back to two once the burst is over; none after shutdown. With
``max_connections=1``: one, no listener, and runs still start (by polling)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from taskmgr import ExecutionStatus, SchedulerService, task
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.storage.sqlalchemy import pool as taskmgr_pool
from tests.services import require_postgres

pytestmark = pytest.mark.postgres


@task("connections.noop")
def noop(n: int) -> int:
    return n


@dataclass
class Database:
    url: sa.URL  # named: its connections are this test's alone
    name: str
    schema: str
    admin: sa.Engine

    def connections(self) -> list[str]:
        """The last statement of each of the test's connections."""
        with self.admin.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT query FROM pg_stat_activity WHERE application_name = :name"),
                {"name": self.name},
            )
            return [row.query for row in rows]

    def settle(self, expected: int, listening: int = 0, within: float = 5.0) -> list[str]:
        """The connections once there are ``expected`` of them, ``listening`` of them
        the ``LISTEN`` one (or at the deadline: the caller's assertion then fails)."""
        deadline = time.monotonic() + within
        while True:
            found = self.connections()
            if (len(found), listeners(found)) == (expected, listening):
                return found
            if time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    # idle connections are closed after 0.3 s instead of 10 s: the test waits less
    monkeypatch.setattr(taskmgr_pool, "IDLE_TIMEOUT_S", 0.3)
    base = sa.make_url(require_postgres())
    name = f"taskmgr-test-{uuid.uuid4().hex[:8]}"
    schema = f"tm_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield Database(base.update_query_dict({"application_name": name}), name, schema, admin)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def listeners(queries: list[str]) -> int:
    return sum(query.startswith("LISTEN") for query in queries)


def sample(db: Database, during: Callable[[], None]) -> list[int]:
    """How many connections the test's name had, every 20 ms while ``during`` runs."""
    counts: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            counts.append(len(db.connections()))
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        during()
    finally:
        done.set()
        watcher.join()
    return counts


def test_an_instance_holds_two_connections_idle_and_max_connections_at_most(
    db: Database,
) -> None:
    service = SchedulerService(db.url, schema=db.schema, jobs=[noop], poll_interval=0.2)
    assert service.storage.max_connections == 4  # type: ignore[attr-defined]
    with service:
        idle = db.settle(2, listening=1)
        assert len(idle) == 2 and listeners(idle) == 1  # one LISTEN, one pooled

        def burst() -> None:
            # the host's threads defer at once, while the instance runs what they defer
            def defer() -> None:
                for n in range(40):
                    service.defer(noop, n=n)

            callers = [threading.Thread(target=defer) for _ in range(6)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join()

        counts = sample(db, burst)
        assert max(counts) == 4, counts  # max_connections, the listener included
        runs = service.list_executions(job_key="connections.noop", limit=500).items
        assert len(runs) == 240

        after = db.settle(2, listening=1)
        assert len(after) == 2 and listeners(after) == 1
        last = runs[0]
        assert service.wait(last.id, timeout=10).status is ExecutionStatus.SUCCESS
    assert db.settle(0) == []  # whoever opens closes


def test_one_connection_in_all_polls_instead_of_listening(db: Database) -> None:
    service = SchedulerService(
        db.url, schema=db.schema, jobs=[noop], poll_interval=0.1, max_connections=1
    )
    with service:

        def run_some() -> None:
            for n in range(5):
                execution = service.defer(noop, n=n)
                assert service.wait(execution.id, timeout=5).status is ExecutionStatus.SUCCESS

        counts = sample(db, run_some)
        assert set(counts) == {1}, counts
        assert listeners(db.connections()) == 0
    assert db.settle(0) == []


def test_connections_are_named_taskmgr_unless_the_url_names_them(db: Database) -> None:
    unnamed = db.url.difference_update_query(["application_name"])
    for url, expected in ((unnamed, "taskmgr"), (db.url, db.name)):
        storage = SQLAlchemyStorage(url, schema=db.schema)
        storage.open()
        try:
            with storage.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW application_name").scalar() == expected
        finally:
            storage.close()
