"""tm0007 on a populated tm0006 database: jobs get their pause columns (empty: a job
paused before keeps its state, paused by nobody known, until resumed), the pauses
table appears, and a backfilled slot is a slot (the unique index covers it); taskmgr
pauses and backfills on it. ``taskmgr db downgrade --to tm0006`` turns backfilled rows
into catch-up rows and drops the rest, keeping every job and execution; the database
can then be upgraded again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from taskmgr.cli import main
from taskmgr.core.enums import JobState, PauseScope
from taskmgr.core.pauses import Pause
from taskmgr.scheduling.backfill import backfill_runs
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs
from tests.migrations.older import older_database
from tests.migrations.rows import MINUTE, T0, job_row, run_row

MakeStorage = Callable[..., SQLAlchemyStorage]


SLOT = run_row(T0 - 2 * MINUTE)


def test_a_populated_tm0006_database_gets_pauses_and_backfills_and_gives_them_back(
    make_storage: MakeStorage,
) -> None:
    with older_database(make_storage, "tm0006") as old:
        engine, schema, env = old.engine, old.schema, old.env
        jobs, executions = old.jobs, old.executions
        with engine.begin() as conn:
            conn.execute(
                jobs.insert(),
                [job_row(1, "nightly", state="active"), job_row(2, "held", state="paused")],
            )
            conn.execute(executions.insert(), [SLOT])

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert _schema_diffs(engine, "taskmgr_", schema) == []
        storage = make_storage()
        storage.open()
        held = storage.get_job("held")
        assert held.state is JobState.PAUSED
        assert (held.paused_by, held.paused_at, held.paused_until) == (None, None, None)
        pause = Pause(scope=PauseScope.QUEUE, name="reports", reason="x", paused_at=T0)
        assert storage.set_pause(pause) == pause
        job = storage.get_job("nightly")
        minutes = [T0 - n * MINUTE for n in (3, 2, 1)]
        written = storage.add_backfill(
            backfill_runs(job, minutes, now=T0, actor=None), job=job, now=T0
        )
        assert [e.scheduled_for for e in written.created] == [T0 - 3 * MINUTE, T0 - MINUTE]
        assert written.existing == 1  # the 0.x slot row holds its slot
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the index covers it
            conn.execute(
                executions.insert(),
                [{**SLOT, "id": "x", "chain_id": "x", "scheduled_for": T0 - MINUTE}],
            )
        storage.close()

        downgrade = CliRunner().invoke(main, ["db", "downgrade", "--to", "tm0006"], env=env)
        assert downgrade.exit_code == 0, downgrade.output
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0006"
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names(schema=schema))
            old_jobs = sa.Table("taskmgr_jobs", sa.MetaData(schema=schema), autoload_with=conn)
            rows = conn.execute(sa.select(old_jobs.c.job_key, old_jobs.c.state)).all()
            triggers = conn.execute(
                sa.select(executions.c.trigger).order_by(executions.c.scheduled_for)
            ).scalars()
            kept = list(triggers)
        assert "taskmgr_pauses" not in names
        assert "paused_until" not in old_jobs.c
        assert sorted(rows) == [("held", "paused"), ("nightly", "active")]
        assert kept == ["catchup", "schedule", "catchup"]

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        again = make_storage()
        again.open()
        assert again.list_pauses(now=T0) == []
        assert again.get_job("held").state is JobState.PAUSED
