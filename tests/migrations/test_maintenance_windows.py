"""tm0008 on a populated tm0007 database: the windows table appears and jobs get their
(empty) exclusion dates, every job and execution kept; taskmgr stores windows and
exclusion dates on it. ``taskmgr db downgrade --to tm0007`` drops the table and the
column, keeping every job (a paused one stays paused) and execution; the database can
then be upgraded again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import sqlalchemy as sa
from click.testing import CliRunner

from taskmgr.cli import main
from taskmgr.core.enums import JobState
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs
from tests.migrations.older import older_database
from tests.migrations.rows import MINUTE, T0, job_row, run_row

MakeStorage = Callable[..., SQLAlchemyStorage]


def _job(job_id: int, key: str, state: str) -> dict[str, object]:
    return job_row(job_id, key, state=state, paused_by="alice" if state == "paused" else None)


SLOT = run_row(T0 - 2 * MINUTE)


def test_a_populated_tm0007_database_gets_windows_and_exclusion_dates_and_gives_them_back(
    make_storage: MakeStorage,
) -> None:
    with older_database(make_storage, "tm0007") as old:
        engine, schema, env = old.engine, old.schema, old.env
        jobs, executions = old.jobs, old.executions
        with engine.begin() as conn:
            conn.execute(jobs.insert(), [_job(1, "nightly", "active"), _job(2, "held", "paused")])
            conn.execute(executions.insert(), [SLOT])

        migrate.upgrade(engine, "taskmgr_", schema, to="tm0008")
        with engine.connect() as conn:
            upgraded = sa.Table("taskmgr_jobs", sa.MetaData(schema=schema), autoload_with=conn)
            column = conn.execute(sa.select(upgraded.c.job_key, upgraded.c.exclude_dates)).all()
            assert "taskmgr_windows" in sa.inspect(conn).get_table_names(schema=schema)
        assert sorted(column) == [("held", None), ("nightly", None)]  # no row rewritten

        assert migrate.upgrade(engine, "taskmgr_", schema) is True  # to the head
        assert _schema_diffs(engine, "taskmgr_", schema) == []
        storage = make_storage()
        storage.open()
        assert storage.get_job("nightly").exclude_dates == ()
        assert storage.get_job("held").state is JobState.PAUSED
        changed = storage.update_job("nightly", {"exclude_dates": ["2026-12-25"]}, now=T0)
        assert storage.get_job("nightly").exclude_dates == (date(2026, 12, 25),)
        window = MaintenanceWindow(
            name="sunday-db",
            cron="0 2 * * SUN",
            duration=7200,
            timezone="Europe/Berlin",
            created_at=T0,
        )
        assert storage.add_window(window, now=T0) == window
        assert storage.list_windows() == [window]
        storage.close()

        downgrade = CliRunner().invoke(main, ["db", "downgrade", "--to", "tm0007"], env=env)
        assert downgrade.exit_code == 0, downgrade.output
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0007"
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names(schema=schema))
            old_jobs = sa.Table("taskmgr_jobs", sa.MetaData(schema=schema), autoload_with=conn)
            rows = conn.execute(
                sa.select(old_jobs.c.job_key, old_jobs.c.state, old_jobs.c.version)
            ).all()
            kept = conn.execute(sa.select(executions.c.id)).scalars().all()
        assert "taskmgr_windows" not in names
        assert "exclude_dates" not in old_jobs.c
        assert sorted(rows) == [("held", "paused", 1), ("nightly", "active", changed.version)]
        assert kept == [SLOT["id"]]

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        again = make_storage()
        again.open()
        assert again.list_windows() == []
        assert again.get_job("nightly").exclude_dates == ()
        again.close()
