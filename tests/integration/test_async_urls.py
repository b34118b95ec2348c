"""One database setting for an asyncio host: the service takes the host's async URL
(``postgresql+asyncpg://``, ``sqlite+aiosqlite://``) or its ``AsyncEngine`` as it is,
fires on it, and defers inside the host's ``AsyncSession`` on that URL's async engine;
the host's pool is never used by taskmgr's threads."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from taskmgr import (
    AsyncSchedulerService,
    DatabaseURLError,
    ExecutionStatus,
    SchedulerService,
    scheduled_job,
    task,
)
from tests.services import require_postgres

pytestmark = pytest.mark.anyio

notes = sa.Table("host_notes", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))


@task("asyncurl.echo")
def echo(text: str) -> str:
    return text


@scheduled_job("asyncurl.tick", interval=1)
def tick() -> str:
    return "tick"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """The host's async URL and the schema of taskmgr's tables (PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'app.db'}", None
        return
    base = sa.make_url(require_postgres())
    schema = f"tm_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        # asyncpg's own options (as a pooler in transaction mode wants them): the host
        # connects with them as they are, taskmgr with their psycopg equivalents
        url = base.set(drivername="postgresql+asyncpg").update_query_dict(
            {"ssl": "disable", "prepared_statement_cache_size": "0"}
        )
        yield url.render_as_string(hide_password=False), schema
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
async def host(database: tuple[str, str | None]) -> AsyncIterator[AsyncEngine]:
    """The host's own async engine on that URL, with a table of its own."""
    url, schema = database
    engine = create_async_engine(url)
    table = notes.to_metadata(sa.MetaData(), schema=schema)
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


async def defer_in_host_transactions(aservice: AsyncSchedulerService, host: AsyncEngine) -> str:
    """A run deferred in a rolled-back session (never written) and one in a committed
    session (written with it); the committed one's id."""
    async with AsyncSession(host) as session:
        await aservice.defer(echo, text="rolled back", session=session)
        await session.rollback()
    async with AsyncSession(host) as session, session.begin():
        kept = await aservice.defer(echo, text="kept", session=session)
    return kept.id


async def test_the_hosts_async_url_gives_a_working_service(
    database: tuple[str, str | None], host: AsyncEngine
) -> None:
    url, schema = database
    service = SchedulerService(url, schema=schema, jobs=[echo, tick], poll_interval=0.1)
    async with AsyncSchedulerService(service) as aservice:
        engine = service.storage.engine  # type: ignore[attr-defined]
        assert engine.dialect.driver in ("psycopg", "pysqlite")
        if engine.dialect.name == "postgresql":  # no prepared statements either
            with engine.connect() as conn:
                assert conn.connection.driver_connection.prepare_threshold is None
        kept = await defer_in_host_transactions(aservice, host)
        done = await aservice.wait(kept, timeout=10)
        assert done.status is ExecutionStatus.SUCCESS and done.result_summary == "kept"
        alone = await aservice.defer(echo, text="alone")  # outside any host transaction
        assert (await aservice.wait(alone.id, timeout=10)).status is ExecutionStatus.SUCCESS
        runs = (await aservice.list_executions(job_key="asyncurl.echo")).items
        assert sorted(run.kwargs["text"] for run in runs) == ["alone", "kept"]
        # the scheduled job fires (its first slot is a second after the start)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ticks = (await aservice.list_executions(job_key="asyncurl.tick")).items
            if any(run.status is ExecutionStatus.SUCCESS for run in ticks):
                break
            await asyncio.sleep(0.05)
        assert [run.result_summary for run in ticks if run.status is ExecutionStatus.SUCCESS]


async def test_the_hosts_async_engine_is_a_storage_and_its_pool_stays_the_hosts(
    database: tuple[str, str | None], host: AsyncEngine
) -> None:
    _, schema = database
    service = SchedulerService(host, schema=schema, jobs=[echo], poll_interval=0.1)
    async with AsyncSchedulerService(service) as aservice:
        # its own engine on the sync driver, from the host engine's URL
        own = service.storage.engine  # type: ignore[attr-defined]
        assert own is not host.sync_engine and own.dialect.driver in ("psycopg", "pysqlite")
        opened_by_host = host.sync_engine.pool.checkedin()  # type: ignore[attr-defined]
        alone = await aservice.defer(echo, text="alone")
        assert (await aservice.wait(alone.id, timeout=10)).status is ExecutionStatus.SUCCESS
        # taskmgr's threads never took a connection of the host's pool
        assert host.sync_engine.pool.checkedin() == opened_by_host  # type: ignore[attr-defined]
        assert host.sync_engine.pool.checkedout() == 0
        kept = await defer_in_host_transactions(aservice, host)
        assert (await aservice.wait(kept, timeout=10)).result_summary == "kept"
    # the host's engine is the host's: still usable after the service stopped
    async with host.connect() as conn:
        assert (await conn.execute(sa.select(1))).scalar() == 1


@pytest.mark.postgres
def test_an_untranslatable_url_is_refused_before_anything_is_written() -> None:
    base = sa.make_url(require_postgres())
    schema = f"tm_{uuid.uuid4().hex[:12]}"
    url = base.set(drivername="postgresql+asyncpg").update_query_dict(
        {"ssl": "require", "record_class": "mymodule.Record"}
    )
    with pytest.raises(DatabaseURLError, match="'record_class' has no libpq equivalent"):
        SchedulerService(url, schema=schema, auto_migrate=True)
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
            ).first()
        assert found is None  # no schema, no table: nothing was written
    finally:
        admin.dispose()
