"""tm0002 on a populated 0.1 database: upgraded in place, every row kept and given its
chain; taskmgr reads and writes it; downgraded back to tm0001, every row is still
there (runs that came to share an instant moved apart by microseconds), and it can be
upgraded again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from taskmgr import ExecutionStatus, ExecutionTrigger
from taskmgr.storage.base import ExecutionFilter, NewExecution
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs
from tests.migrations.older import older_database

MakeStorage = Callable[..., SQLAlchemyStorage]
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ALL = ExecutionFilter()


def _row(execution_id: str, scheduled_for: datetime, attempt: int, trigger: str) -> dict:
    return {
        "id": execution_id,
        "job_id": 1,
        "job_key": "report",
        "scheduled_for": scheduled_for,
        "attempt": attempt,
        "trigger": trigger,
        "status": "success",
        "due_at": scheduled_for,
        "queued": False,
        "kwargs": {},
        "created_at": scheduled_for,
        "completed_at": scheduled_for + timedelta(seconds=1),
    }


def test_a_populated_0_1_database_is_upgraded_in_place_and_back(make_storage: MakeStorage) -> None:
    with older_database(make_storage, "tm0001") as old:
        engine, schema = old.engine, old.schema
        jobs, executions = old.jobs, old.executions
        with engine.begin() as conn:
            conn.execute(
                jobs.insert().values(
                    id=1,
                    job_key="report",
                    func="tests.jobs.witness.witness",
                    names={},
                    trigger={"type": "interval", "every": 60, "start": T0.isoformat()},
                    kwargs={},
                    max_instances=1,
                    overlap_policy="skip",
                    misfire_grace_time=60.0,
                    coalesce=True,
                    max_retries=2,
                    retry_backoff_base=1.0,
                    retry_backoff_max=300.0,
                    retry_jitter=0.0,
                    state="active",
                    source="api",
                    next_run_at=T0 + timedelta(hours=1),
                    version=1,
                    created_at=T0,
                    updated_at=T0,
                )
            )
            conn.execute(
                executions.insert(),
                [
                    _row("slot-1", T0, 1, "schedule"),
                    _row("slot-1-retry", T0, 2, "retry"),
                    _row("orphan-retry", T0 + timedelta(minutes=1), 2, "retry"),  # 1st deleted
                    _row("manual", T0 + timedelta(minutes=2), 1, "manual"),
                ],
            )

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert _schema_diffs(engine, "taskmgr_", schema) == []
        storage = make_storage()
        storage.open()
        chains = {e.id: e.chain_id for e in storage.list_executions(ALL, limit=10)}
        assert chains == {
            "slot-1": "slot-1",
            "slot-1-retry": "slot-1",
            "orphan-retry": "orphan-retry",
            "manual": "manual",
        }
        job = storage.get_job("report")
        for execution_id in ("twin-a", "twin-b"):  # two runs asked for at one instant
            storage.add_execution(
                NewExecution(
                    id=execution_id,
                    job_id=job.id,
                    job_key=job.key,
                    scheduled_for=T0 + timedelta(minutes=3),
                    attempt=1,
                    trigger=ExecutionTrigger.DEFERRED,
                    status=ExecutionStatus.PENDING,
                    due_at=T0,
                    created_at=T0,
                    idempotency_key=execution_id,
                )
            )
        storage.close()

        assert migrate.downgrade(engine, "tm0001", "taskmgr_", schema) is True
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0001"
        with engine.connect() as conn:
            old = sa.Table(executions.name, sa.MetaData(schema=schema), autoload_with=conn)
            assert "chain_id" not in old.c
            kept = {row.id: row.scheduled_for for row in conn.execute(sa.select(old))}
        assert set(kept) == {"slot-1", "slot-1-retry", "orphan-retry", "manual", "twin-a", "twin-b"}
        twins = sorted(_utc(kept[i]) for i in ("twin-a", "twin-b"))
        assert twins == [T0 + timedelta(minutes=3), T0 + timedelta(minutes=3, microseconds=1)]

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert _schema_diffs(engine, "taskmgr_", schema) == []


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
