"""tm0003 on a populated tm0002 database: upgraded in place (every row kept, none
given a key or a group), taskmgr bounds a task per argument value on it, and
``taskmgr db downgrade`` takes it back to tm0002 keeping every row, then it can be
upgraded again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from click.testing import CliRunner

from taskmgr import ExecutionStatus, ExecutionTrigger
from taskmgr.cli import main
from taskmgr.core.triggers import Manual
from taskmgr.storage.base import ExecutionFilter, NewExecution
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs
from tests.migrations.older import older_database

MakeStorage = Callable[..., SQLAlchemyStorage]
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _job(job_id: int, key: str, trigger: dict, overlap: str) -> dict:
    return {
        "id": job_id,
        "job_key": key,
        "func": "tests.jobs.witness.witness",
        "names": {},
        "trigger": trigger,
        "kwargs": {},
        "max_instances": 1,
        "overlap_policy": overlap,
        "misfire_grace_time": None,
        "coalesce": True,
        "max_retries": 0,
        "retry_backoff_base": 1.0,
        "retry_backoff_max": 300.0,
        "retry_jitter": 0.0,
        "state": "active",
        "source": "api",
        "next_run_at": None,
        "version": 1,
        "created_at": T0,
        "updated_at": T0,
    }


def _run(execution_id: str, status: str, customer: str) -> dict:
    return {
        "id": execution_id,
        "job_id": 1,
        "job_key": "reports",
        "scheduled_for": T0,
        "attempt": 1,
        "chain_id": execution_id,
        "trigger": "deferred",
        "status": status,
        "due_at": T0,
        "queued": status == "pending",
        "kwargs": {"customer": customer},
        "created_at": T0,
        "completed_at": T0 + timedelta(seconds=1) if status == "success" else None,
    }


def test_a_populated_tm0002_database_is_upgraded_in_place_and_back(
    make_storage: MakeStorage,
) -> None:
    with older_database(make_storage, "tm0002") as old:
        engine, schema, env = old.engine, old.schema, old.env
        jobs, executions = old.jobs, old.executions
        with engine.begin() as conn:
            conn.execute(jobs.insert(), [_job(1, "reports", {"type": "manual"}, "queue")])
            conn.execute(
                executions.insert(),
                [_run("done", "success", "acme"), _run("waiting", "pending", "acme")],
            )

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert migrate.current_revision(engine, "taskmgr_", schema) == migrate.head_revision()
        assert _schema_diffs(engine, "taskmgr_", schema) == []
        storage = make_storage()
        storage.open()
        job = storage.get_job("reports")
        assert job.concurrency_key is None
        before = storage.list_executions(ExecutionFilter(), limit=10)
        assert {(e.id, e.concurrency_value) for e in before} == {("done", None), ("waiting", None)}
        job = storage.update_job("reports", {"concurrency_key": "customer"}, now=T0)
        assert isinstance(job.trigger, Manual)
        storage.add_execution(
            NewExecution(
                id="grouped",
                job_id=job.id,
                job_key=job.key,
                scheduled_for=T0,
                attempt=1,
                trigger=ExecutionTrigger.DEFERRED,
                status=ExecutionStatus.PENDING,
                due_at=T0,
                created_at=T0,
                queued=True,
                kwargs={"customer": "bolt"},
                concurrency_value='"bolt"',
            )
        )
        assert storage.get_execution("grouped").concurrency_value == '"bolt"'
        storage.close()

        downgrade = CliRunner().invoke(main, ["db", "downgrade", "--to", "tm0002"], env=env)
        assert downgrade.exit_code == 0, downgrade.output
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0002"
        with engine.connect() as conn:
            old_jobs = sa.Table(jobs.name, sa.MetaData(schema=schema), autoload_with=conn)
            old = sa.Table(executions.name, sa.MetaData(schema=schema), autoload_with=conn)
            assert "concurrency_key" not in old_jobs.c
            assert "concurrency_value" not in old.c
            kept = set(conn.execute(sa.select(old.c.id)).scalars())
            assert conn.execute(sa.select(old_jobs.c.job_key)).scalars().all() == ["reports"]
        assert kept == {"done", "waiting", "grouped"}

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert _schema_diffs(engine, "taskmgr_", schema) == []
