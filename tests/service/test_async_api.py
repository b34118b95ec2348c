"""The awaitable API: every public method of ``SchedulerService`` has an awaitable form
of the same signature on ``AsyncSchedulerService``, which runs the one implementation
in a worker thread (the event loop keeps running meanwhile), and an ``AsyncSession``
defers inside the host's transaction."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from taskmgr import (
    AsyncSchedulerService,
    ExecutionStatus,
    JobNotFoundError,
    SchedulerService,
    task,
)
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.testing import FakeClock, make_test_service

pytestmark = pytest.mark.anyio

#: Public attributes of the service that are state, not operations.
PROPERTIES = {
    "heartbeat_interval",
    "heartbeat_timeout",
    "instance_retention",
    "mode",
    "running",
    "sweep_interval",
}


@task("async.echo")
def echo(text: str) -> str:
    return text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name in dir(cls)
        if not name.startswith("_") and name not in PROPERTIES and callable(getattr(cls, name))
    }


def test_every_public_method_has_an_awaitable_form() -> None:
    sync = public_methods(SchedulerService)
    missing = sync - set(dir(AsyncSchedulerService))
    assert missing == set(), f"no awaitable form for {sorted(missing)}"
    for name in sorted(sync):
        method = getattr(AsyncSchedulerService, name)
        assert inspect.iscoroutinefunction(method), name
        theirs = list(inspect.signature(getattr(SchedulerService, name)).parameters.values())
        ours = list(inspect.signature(method).parameters.values())
        assert [p.name for p in ours[1:]] == [p.name for p in theirs[1:]], name
        assert method.__doc__, name


@pytest.fixture
def aservice() -> Iterator[AsyncSchedulerService]:
    clock = FakeClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    with make_test_service([echo], clock=clock) as service:
        yield AsyncSchedulerService(service)


async def test_operations_await_the_same_service(aservice: AsyncSchedulerService) -> None:
    assert [job.key for job in await aservice.list_jobs()] == ["async.echo"]
    deferred = await aservice.defer("async.echo", text="hi")
    [run] = await aservice.run_due()
    assert run.id == deferred.id and run.result_summary == "hi"
    assert (await aservice.get_execution(run.id)).status is ExecutionStatus.SUCCESS
    many = await aservice.defer_many(echo, [{"text": "a"}, {"text": "b"}])
    assert [e.kwargs for e in many] == [{"text": "a"}, {"text": "b"}]
    with pytest.raises(JobNotFoundError):
        await aservice.defer("async.nope", text="x")


async def test_the_event_loop_keeps_running_while_a_call_blocks(
    aservice: AsyncSchedulerService,
) -> None:
    entered, release = threading.Event(), threading.Event()
    real = aservice.sync.storage.list_jobs

    def slow_list_jobs(*args: object, **kwargs: object) -> object:
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    aservice.sync.storage.list_jobs = slow_list_jobs  # type: ignore[method-assign]
    call = asyncio.ensure_future(aservice.list_jobs())
    ticks = 0
    while not entered.is_set():  # the loop runs while the call waits in its thread
        await asyncio.sleep(0)
        ticks += 1
    for _ in range(10):
        await asyncio.sleep(0)
        ticks += 1
    assert not call.done()
    release.set()
    assert [job.key for job in await call] == ["async.echo"]
    assert ticks >= 10


async def test_async_with_starts_and_shuts_down(tmp_path: Path) -> None:
    service = SchedulerService(f"sqlite:///{tmp_path / 'a.db'}", jobs=[echo], poll_interval=0.1)
    async with AsyncSchedulerService(service) as aservice:
        assert aservice.running
    assert not service.running
    await asyncio.to_thread(service.close)


@task("async.where")
async def where() -> int:
    return id(asyncio.get_running_loop())


async def test_async_jobs_run_on_the_loop_that_started_the_service() -> None:
    service = make_test_service([where], clock=FakeClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC)))
    async with AsyncSchedulerService(service) as aservice:  # started in a worker thread
        await aservice.defer(where)
        [run] = await aservice.run_due()  # the job runs here while run_due waits
    assert run.status is ExecutionStatus.SUCCESS
    assert run.result_summary == id(asyncio.get_running_loop())


async def test_an_async_session_defers_in_the_host_transaction(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    storage = SQLAlchemyStorage(f"sqlite:///{path}")
    clock = FakeClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        with make_test_service([echo], clock=clock, storage=storage) as service:
            aservice = AsyncSchedulerService(service)
            async with engine.begin() as conn:
                await conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
            async with AsyncSession(engine) as session:
                await session.execute(sa.text("INSERT INTO notes (id) VALUES (1)"))
                await aservice.defer("async.echo", text="rolled back", session=session)
                await session.rollback()
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(sa.text("INSERT INTO notes (id) VALUES (2)"))
                await aservice.defer("async.echo", text="kept", session=session)
            runs = await aservice.run_due()
            assert [r.kwargs["text"] for r in runs] == ["kept"]
            assert len((await aservice.list_executions()).items) == 1
    finally:
        await engine.dispose()
        storage.close()
