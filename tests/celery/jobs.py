"""Jobs the Celery tests run on real workers. Each records its own start through its own
connection (env ``CELERY_WITNESS_URL``), so starts are counted from what the jobs
saw, not from taskmgr's rows. The ``witness`` table has no unique key: a slot started
twice shows up as two rows."""

from __future__ import annotations

import asyncio
import os
import time
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded

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


def canary(path: str) -> None:
    """Never registered on the worker: running it would create ``path``."""
    Path(path).touch()
