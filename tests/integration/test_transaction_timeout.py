"""A command whose transaction PostgreSQL ended for idling (``idle_in_transaction_
session_timeout``: the process was starved of CPU or stopped between two statements)
runs again once, from its first statement; ended twice, it fails with
:class:`TransactionTimedOutError` and nothing of it is written.

The stall is real: the process stops before the command's second statement until the
server has ended the session (seen in ``pg_stat_activity``). Only the stalled
transaction gets a short timeout (``SET LOCAL``), so it strikes at once there and never
in the test's other transactions, however slow a loaded machine makes them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from taskmgr import TransactionTimedOutError
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from tests.contract.helpers import T0, add_job
from tests.services import require_postgres

pytestmark = pytest.mark.postgres


class Stall:
    """Stops the next ``times`` UPDATEs of the jobs table until the server has ended
    their session, which it does once the transaction idled past the timeout."""

    def __init__(self, admin: sa.Engine, times: int) -> None:
        self.admin = admin
        self.left = times
        self.stalled = 0

    def __call__(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.left <= 0 or not statement.lstrip().upper().startswith("UPDATE"):
            return
        self.left -= 1
        self.stalled += 1
        dbapi = conn.connection.dbapi_connection
        dbapi.execute("SET LOCAL idle_in_transaction_session_timeout = 50")
        pid = dbapi.info.backend_pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.admin.connect() as admin:
                alive = admin.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ).scalar_one()
            if not alive:
                return
            time.sleep(0.02)
        raise AssertionError("the server never ended the idle transaction")


@pytest.fixture
def postgres() -> Iterator[tuple[SQLAlchemyStorage, sa.Engine]]:
    url = require_postgres()
    schema = f"tm_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    storage = SQLAlchemyStorage(url, schema=schema)
    storage.open()
    try:
        yield storage, admin
    finally:
        storage.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def test_a_command_ended_for_idling_runs_again_once(
    postgres: tuple[SQLAlchemyStorage, sa.Engine], caplog: pytest.LogCaptureFixture
) -> None:
    storage, admin = postgres
    job = add_job(storage, "nightly")
    stall = Stall(admin, times=1)
    sa.event.listen(storage.engine, "before_cursor_execute", stall)

    updated = storage.update_job("nightly", {"description": "after"}, now=T0)

    assert stall.stalled == 1
    assert updated.version == job.version + 1
    stored = storage.get_job("nightly")
    assert (stored.description, stored.version) == ("after", job.version + 1)
    assert any("running it again" in r.getMessage() for r in caplog.records)


def test_ended_twice_it_fails_and_writes_nothing(
    postgres: tuple[SQLAlchemyStorage, sa.Engine],
) -> None:
    storage, admin = postgres
    job = add_job(storage, "nightly")
    stall = Stall(admin, times=2)
    sa.event.listen(storage.engine, "before_cursor_execute", stall)

    with pytest.raises(TransactionTimedOutError, match="idle-in-transaction"):
        storage.update_job("nightly", {"description": "after"}, now=T0)

    assert stall.stalled == 2
    stored = storage.get_job("nightly")
    assert (stored.description, stored.version) == (job.description, job.version)
