"""Jobs the Celery tests run on real workers. Each records its own start through its own
connection (env ``CELERY_WITNESS_URL``), so starts are counted from what the jobs
saw, not from taskmgr's rows. The ``witness`` table has no unique key: a slot started
twice shows up as two rows."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskmgr import current_execution

metadata = sa.MetaData()
witness_table = sa.Table(
    "witness",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_key", sa.String(128), nullable=False),
    sa.Column("scheduled_for", sa.String(40), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("execution_id", sa.String(36), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("note", sa.String(32), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)


@cache
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, connect_args={"timeout": 30})


def create_witness_table(url: str) -> None:
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()


def read_witness(url: str) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(witness_table).order_by(witness_table.c.id)))
    finally:
        engine.dispose()


def record(note: str = "start") -> None:
    context = current_execution()
    assert context is not None
    with _engine(os.environ["CELERY_WITNESS_URL"]).begin() as conn:
        conn.execute(
            witness_table.insert().values(
                job_key=context.job_key,
                scheduled_for=context.scheduled_for.isoformat(),
                attempt=context.attempt,
                execution_id=context.execution_id,
                pid=os.getpid(),
                note=note,
                at=time.time(),
            )
        )


def witness() -> str:
    record()
    return "ok"


async def witness_async() -> str:
    await asyncio.sleep(0)
    record()
    return "ok-async"


def echo(n: int, text: str = "") -> dict[str, object]:
    """A task deferred with arguments: returns them."""
    record()
    return {"n": n, "text": text}


def fail_first(n: int) -> int:
    """Fails its first attempt, succeeds on its retry."""
    record()
    context = current_execution()
    assert context is not None
    if context.attempt == 1:
        raise RuntimeError(f"first attempt of {n} fails")
    return n


def fail_nul() -> None:
    """Fails with a message no PostgreSQL text column accepts as it is."""
    record()
    raise ValueError("a\x00b")


def fail() -> None:
    record()
    raise RuntimeError("this job always fails")


def slow(seconds: float = 3.0) -> None:
    record()
    time.sleep(seconds)


def held(release: str, seconds: float = 60.0) -> None:
    """Runs until the file ``release`` exists (a test ends it when it has seen enough),
    for ``seconds`` at most."""
    record()
    deadline = time.monotonic() + seconds
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


def cooperative(seconds: float = 30.0) -> None:
    """Stops at its soft time limit (cleans up, then lets the limit end it)."""
    record()
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        record("soft-limit")
        raise


def stubborn(seconds: float = 30.0) -> None:
    """Ignores its soft time limit: only the hard limit ends it."""
    record()
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        record("soft-ignored")
        time.sleep(seconds)


def traced(n: int = 0) -> int:
    """Logs a line of its own (the worker's log shows the execution it ran in)."""
    record()
    logging.getLogger("tests.celery.jobs").warning("traced job working on %d", n)
    if n < 0:
        raise ValueError(f"negative: {n}")
    return n


#: A host's pooled async engine, made once when its module is imported, as a host makes
#: it (asyncpg binds each pooled connection to the event loop that opened it). One
#: connection: every run reuses the previous run's.
ASYNC_ENGINE: AsyncEngine | None = (
    create_async_engine(
        os.environ["TASKMGR_CELERY_TEST_ASYNC_DB"], pool_size=1, max_overflow=0, pool_timeout=20
    )
    if "TASKMGR_CELERY_TEST_ASYNC_DB" in os.environ
    else None
)


async def pooled_async(n: int) -> dict[str, int]:
    """Queries through the pooled engine; says which process ran it and how many runs
    its event loop has seen (counted on the loop itself: a new loop counts from 1)."""
    assert ASYNC_ENGINE is not None, "TASKMGR_CELERY_TEST_ASYNC_DB is not set"
    loop: Any = asyncio.get_running_loop()
    loop.test_runs = runs = getattr(loop, "test_runs", 0) + 1
    async with ASYNC_ENGINE.connect() as conn:
        value = (await conn.execute(sa.text("SELECT CAST(:n AS INTEGER)"), {"n": n})).scalar_one()
    record()
    return {"n": value, "pid": os.getpid(), "loop_runs": runs}


async def sleepy_async(seconds: float = 30.0) -> None:
    """Awaits past its timeout; notes the cancellation it gets there."""
    record()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record("cancelled")
        raise


def canary(path: str) -> None:
    """Never registered on the worker: running it would create ``path``."""
    Path(path).touch()
