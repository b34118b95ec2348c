"""A job that records each start in a table of its own, independent of taskmgr's rows,
so multi-process tests can count starts per slot from what the jobs themselves saw."""

from __future__ import annotations

import os
from functools import cache

import sqlalchemy as sa

from taskmgr import current_execution

metadata = sa.MetaData()
witness_table = sa.Table(
    "witness",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_key", sa.String(128), nullable=False),
    sa.Column("scheduled_for", sa.String(40), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)


@cache
def _engine() -> sa.Engine:
    url = os.environ["WITNESS_DATABASE_URL"]
    args = {"timeout": 30} if url.startswith("sqlite") else {}
    return sa.create_engine(url, connect_args=args, pool_pre_ping=True)


def create_witness_table(url: str) -> None:
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def witness() -> None:
    context = current_execution()
    assert context is not None
    with _engine().begin() as conn:
        conn.execute(
            witness_table.insert().values(
                job_key=context.job_key,
                scheduled_for=context.scheduled_for.isoformat(),
                attempt=context.attempt,
                pid=os.getpid(),
            )
        )
