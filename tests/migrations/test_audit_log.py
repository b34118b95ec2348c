"""tm0004 on a populated tm0003 database: the audit table is added and every job keeps
the global retention (``retention`` NULL); taskmgr records and reads entries on it;
``taskmgr db downgrade --to tm0003`` drops the table and the column, keeping every job,
and the database can be upgraded again."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from click.testing import CliRunner

from taskmgr.cli import main
from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.storage.base import AuditFilter, AuditRecord
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs
from tests.migrations.older import older_database
from tests.migrations.rows import T0, job_row

MakeStorage = Callable[..., SQLAlchemyStorage]

JOB = job_row(
    1,
    "nightly",
    trigger={"type": "interval", "every": 60, "start": "2026-06-01T12:00:00Z"},
    created_at=T0,
    updated_at=T0,
)


def test_a_populated_tm0003_database_gets_the_audit_log_and_gives_it_back(
    make_storage: MakeStorage,
) -> None:
    with older_database(make_storage, "tm0003") as old:
        engine, schema, env, jobs = old.engine, old.schema, old.env, old.jobs
        with engine.begin() as conn:
            conn.execute(jobs.insert(), [JOB])

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        assert _schema_diffs(engine, "taskmgr_", schema) == []
        storage = make_storage()
        storage.open()
        assert storage.get_job("nightly").retention is None
        record = AuditRecord(action=AuditAction.UPDATE, source=AuditSource.CLI, at=T0, actor="ops")
        storage.update_job("nightly", {"retention": 3600}, now=T0, audit=record)
        [entry] = storage.list_audit(AuditFilter(), limit=10)
        assert entry.details == {"changes": {"retention": {"before": None, "after": 3600.0}}}
        storage.close()

        downgrade = CliRunner().invoke(main, ["db", "downgrade", "--to", "tm0003"], env=env)
        assert downgrade.exit_code == 0, downgrade.output
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0003"
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names(schema=schema))
            old = sa.Table("taskmgr_jobs", sa.MetaData(schema=schema), autoload_with=conn)
            rows = conn.execute(sa.select(old.c.job_key, old.c.version)).all()
        assert "taskmgr_audit" not in names
        assert "retention" not in old.c
        assert rows == [("nightly", 2)]

        assert migrate.upgrade(engine, "taskmgr_", schema) is True
        again = make_storage()
        again.open()
        assert again.list_audit(AuditFilter(), limit=10) == []
        assert again.get_job("nightly").retention is None
