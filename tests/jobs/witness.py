"""Jobs that record each start in a table of their own, independent of taskmgr's rows,
so multi-process tests can count starts per slot from what the jobs themselves saw.

The ``witness`` table has no unique constraint on purpose: a slot started twice shows
up as two rows. Each start is written through the job's own connection (env
``WITNESS_DATABASE_URL``); when the database is briefly unreachable (a restart in a
fault test) the insert is retried, so a start that happened is never lost from the
record.
"""

from __future__ import annotations

import os
import time
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
    sa.Column("execution_id", sa.String(36), nullable=True),
    # host wall-clock seconds (time.time()) when the job body began
    sa.Column("started_at", sa.Float, nullable=True),
)

#: How long a start keeps trying to record itself while the database is unreachable.
RECORD_DEADLINE = 60.0


@cache
def _engine() -> sa.Engine:
    url = os.environ["WITNESS_DATABASE_URL"]
    args = {"timeout": 30} if url.startswith("sqlite") else {"connect_timeout": 5}
    return sa.create_engine(url, connect_args=args, pool_pre_ping=True)


def create_witness_table(url: str) -> None:
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def _record() -> None:
    started = time.time()
    context = current_execution()
    assert context is not None
    values = {
        "job_key": context.job_key,
        "scheduled_for": context.scheduled_for.isoformat(),
        "attempt": context.attempt,
        "pid": os.getpid(),
        "execution_id": context.execution_id,
        "started_at": started,
    }
    deadline = time.monotonic() + RECORD_DEADLINE
    while True:
        try:
            with _engine().begin() as conn:
                conn.execute(witness_table.insert().values(**values))
            return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def witness() -> None:
    """Record this start."""
    _record()


def witness_slow(seconds: float = 5.0) -> None:
    """Record this start, then keep running for ``seconds`` (a long job to kill mid-run)."""
    _record()
    time.sleep(seconds)
