"""tm0009 on a populated tm0008 database: jobs get their alert thresholds (empty: the
service's defaults), the incidents table appears with its one-open-incident-per-job-
and-rule index, and taskmgr evaluates the rules on it. ``taskmgr db downgrade --to
tm0008`` drops the table and the columns, keeping every job and execution; the
database can then be upgraded again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from taskmgr.cli import main
from taskmgr.core.alerts import AlertDefaults, AlertRule
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs
from tests.migrations.older import older_database
from tests.migrations.rows import MINUTE, T0, job_row, run_row

MakeStorage = Callable[..., SQLAlchemyStorage]


def _job(job_id: int, key: str) -> dict[str, object]:
    return job_row(job_id, key, next_run_at=T0 - 10 * MINUTE)


RUN = run_row(T0 - 20 * MINUTE)


def test_a_populated_tm0008_database_gets_alerts_and_gives_them_back(
    make_storage: MakeStorage,
) -> None:
    with older_database(make_storage, "tm0008") as old:
        engine, schema, env = old.engine, old.schema, old.env
        jobs, executions = old.jobs, old.executions
        with engine.begin() as conn:
            conn.execute(jobs.insert(), [_job(1, "nightly"), _job(2, "hourly")])
            conn.execute(executions.insert(), [RUN])

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert _schema_diffs(engine, "taskmgr_", schema) == []
        storage = make_storage()
        storage.open()
        nightly = storage.get_job("nightly")
        assert (nightly.alert_late_after, nightly.alert_failures) == (None, None)
        assert storage.list_incidents(limit=10) == []
        storage.update_job("nightly", {"alert_no_success_within": 600.0}, now=T0 - 30 * MINUTE)
        # the old rows are judged: nightly's last success is 20 minutes old, hourly has a
        # slot 10 minutes late (the service's default)
        changes = storage.evaluate_alerts(now=T0, defaults=AlertDefaults(late_after=300))
        assert changes is not None
        found = sorted((i.job_key, i.rule) for i in changes.opened)
        assert found == [
            ("hourly", AlertRule.LATE),
            ("nightly", AlertRule.LATE),
            ("nightly", AlertRule.NO_SUCCESS),
        ]
        incidents = sa.Table("taskmgr_incidents", sa.MetaData(schema=schema), autoload_with=engine)
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the index holds
            conn.execute(
                incidents.insert(),
                [
                    {
                        "job_key": "hourly",
                        "rule": "late",
                        "since": T0,
                        "opened_at": T0,
                        "message": "again",
                        "details": {},
                        "notify_attempts": 0,
                    }
                ],
            )
        storage.close()

        downgrade = CliRunner().invoke(main, ["db", "downgrade", "--to", "tm0008"], env=env)
        assert downgrade.exit_code == 0, downgrade.output
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0008"
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names(schema=schema))
            old_jobs = sa.Table("taskmgr_jobs", sa.MetaData(schema=schema), autoload_with=conn)
            keys = conn.execute(sa.select(old_jobs.c.job_key)).scalars().all()
            kept = conn.execute(sa.select(sa.func.count()).select_from(executions)).scalar()
        assert "taskmgr_incidents" not in names
        assert "alert_no_success_within" not in old_jobs.c
        assert sorted(keys) == ["hourly", "nightly"]
        assert kept == 1

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        again = make_storage()
        again.open()
        assert again.list_incidents(limit=10) == []
        assert again.get_job("nightly").alert_no_success_within is None
