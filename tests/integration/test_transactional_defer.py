"""Deferring inside the host's own transaction (the outbox pattern): the run exists if
and only if the host commits, it is invisible to every instance until then, the task
sees the host's rows written before it, and the wake-up comes after the commit. A
session on another database is refused. SQLite file and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from taskmgr import ExecutionStatus, InvalidInputError, task
from taskmgr.service import SchedulerService
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.testing import FakeClock, make_test_service
from tests.services import require_postgres

host_metadata = sa.MetaData()
signups = sa.Table(
    "host_signups",
    host_metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
)
SEEN: list[bool] = []
ENGINES: dict[str, sa.Engine] = {}


@task("signup.welcome")
def welcome(user_id: int) -> bool:
    """Reads the host's row: it must be there when the run starts."""
    with ENGINES["host"].connect() as conn:
        found = conn.execute(sa.select(signups).where(signups.c.user_id == user_id)).first()
    SEEN.append(found is not None)
    return found is not None


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    base = require_postgres()
    name = f"tm_outbox_{abs(hash(tmp_path)) % 10**8}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def host(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    host_metadata.create_all(engine)
    ENGINES["host"] = engine
    SEEN.clear()
    yield engine
    engine.dispose()


@pytest.fixture
def service(url: str, host: sa.Engine) -> Iterator[SchedulerService]:
    clock = FakeClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    storage = SQLAlchemyStorage(url)
    with make_test_service([welcome], clock=clock, storage=storage) as svc:
        yield svc
    storage.close()


def _rows(service: SchedulerService) -> list[object]:
    return service.list_executions(job_key="signup.welcome").items


def test_committed_runs_once_and_sees_the_host_s_rows(
    service: SchedulerService, host: sa.Engine
) -> None:
    with Session(host) as session, session.begin():
        session.execute(signups.insert().values(user_id=42))
        deferred = service.defer("signup.welcome", user_id=42, session=session)
    [run] = service.run_due()
    assert run.id == deferred.id
    assert run.status is ExecutionStatus.SUCCESS
    assert SEEN == [True]
    assert service.run_due() == []


def test_rolled_back_leaves_no_run(service: SchedulerService, host: sa.Engine) -> None:
    with Session(host) as session:
        session.execute(signups.insert().values(user_id=7))
        service.defer("signup.welcome", user_id=7, session=session)
        service.defer_many("signup.welcome", [{"user_id": 8}], session=session)
        session.rollback()
    assert _rows(service) == []
    assert service.run_due() == []
    assert SEEN == []


def test_a_connection_works_as_a_session_does(service: SchedulerService, host: sa.Engine) -> None:
    with host.begin() as conn:
        conn.execute(signups.insert().values(user_id=1))
        service.defer("signup.welcome", user_id=1, session=conn)
    assert [r.status for r in service.run_due()] == [ExecutionStatus.SUCCESS]


def test_no_instance_sees_the_run_before_the_commit(
    url: str, service: SchedulerService, host: sa.Engine
) -> None:
    if url.startswith("sqlite"):
        pytest.skip("SQLite's write lock makes every other writer wait for the commit")
    with Session(host) as session, session.begin():
        session.execute(signups.insert().values(user_id=5))
        service.defer("signup.welcome", user_id=5, session=session)
        assert service.run_due() == []  # another connection: nothing to claim yet
        assert _rows(service) == []
    assert [r.status for r in service.run_due()] == [ExecutionStatus.SUCCESS]
    assert SEEN == [True]


def test_on_commit_is_called_after_the_commit_only(url: str, host: sa.Engine) -> None:
    storage = SQLAlchemyStorage(url)
    try:
        with make_test_service([welcome], storage=storage) as svc:
            job = svc.get_job("signup.welcome")
            calls: list[str] = []
            woke = []
            svc._wake = lambda: woke.append(1)  # type: ignore[method-assign]
            with Session(host) as session:
                svc.defer(job.key, user_id=1, session=session)
                calls.append(f"before commit: {len(woke)}")
                session.commit()
                calls.append(f"after commit: {len(woke)}")
            with Session(host) as session:
                svc.defer(job.key, user_id=2, session=session)
                session.rollback()
            assert calls == ["before commit: 0", "after commit: 1"]
            assert woke == [1]
    finally:
        storage.close()


def test_a_session_on_another_database_is_refused(
    service: SchedulerService, tmp_path: Path
) -> None:
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}", poolclass=sa.NullPool)
    try:
        with Session(other) as session:
            with pytest.raises(InvalidInputError, match="not to taskmgr's database") as refused:
                service.defer("signup.welcome", user_id=1, session=session)
            assert refused.value.field == "session"
            session.rollback()
        with pytest.raises(InvalidInputError, match="Session or Connection"):
            service.defer("signup.welcome", user_id=1, session="not a session")
    finally:
        other.dispose()
    assert _rows(service) == []
