"""Start-up rules, revision walk without drift, concurrent upgrades, autogenerate hygiene."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from taskmgr import SchedulerService, SchemaAheadError, SchemaBehindError, StorageError
from taskmgr.cli import main
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, build_metadata, migrate
from tests.integration.test_sqlalchemy_storage import _schema_diffs

MakeStorage = Callable[..., SQLAlchemyStorage]


def _url_schema(storage: SQLAlchemyStorage) -> tuple[str, str | None]:
    return storage._url, storage.tables.metadata.schema


def test_upgrade_walks_every_revision_to_the_model(make_storage: MakeStorage) -> None:
    probe = make_storage()
    url, schema = _url_schema(probe)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        revisions = [r.revision for r in migrate.history()]
        assert revisions[-1] == migrate.head_revision()
        for revision in revisions:  # one step at a time, from the first revision
            assert migrate.upgrade(engine, "taskmgr_", schema, to=revision) is True
            assert migrate.current_revision(engine, "taskmgr_", schema) == revision
        assert _schema_diffs(engine, "taskmgr_", schema) == []
    finally:
        engine.dispose()


def test_empty_database_is_created_at_head(make_storage: MakeStorage) -> None:
    storage = make_storage()
    storage.open()
    _, schema = _url_schema(storage)
    assert migrate.status(storage.engine, "taskmgr_", schema).state == "current"


@pytest.mark.usefixtures("future")
def test_database_behind_refuses_to_start_unless_auto_migrate(make_storage: MakeStorage) -> None:
    probe = make_storage()
    url, schema = _url_schema(probe)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        migrate.upgrade(engine, "taskmgr_", schema, to="tm0001")
        with pytest.raises(SchemaBehindError, match=r"tm0001.*run `taskmgr db upgrade`"):
            make_storage().open()
        service = SchedulerService(make_storage(), background=False)
        with pytest.raises(SchemaBehindError):
            service.list_jobs()
        env = {"TASKMGR_DATABASE_URL": url, "TASKMGR_DB_SCHEMA": schema or ""}
        check = CliRunner().invoke(main, ["db", "check"], env=env)
        assert check.exit_code == 1
        assert "behind (tm0001, head is tm9001)" in check.output
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm0001"  # untouched

        auto = make_storage(auto_migrate=True)
        auto.open()
        assert migrate.current_revision(engine, "taskmgr_", schema) == "tm9001"
    finally:
        engine.dispose()


def test_service_auto_migrate_argument_reaches_the_storage(tmp_path: object) -> None:
    assert SchedulerService("sqlite://", auto_migrate=True).storage.auto_migrate is True  # type: ignore[attr-defined]
    assert SchedulerService("sqlite://").storage.auto_migrate is False  # type: ignore[attr-defined]


def test_database_ahead_refuses_to_start(
    make_storage: MakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = make_storage()
    url, schema = _url_schema(probe)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with pytest.MonkeyPatch.context() as patch:  # a newer taskmgr migrated it
            from tests.migrations import conftest

            original = migrate.alembic_config

            def config(*args: object, **kwargs: object) -> object:
                made = original(*args, **kwargs)  # type: ignore[arg-type]
                made.set_main_option(
                    "version_locations",
                    os.pathsep.join([str(conftest.PACKAGED), str(conftest.FUTURE)]),
                )
                return made

            patch.setattr(migrate, "alembic_config", config)
            migrate.upgrade(engine, "taskmgr_", schema)
        for storage in (make_storage(), make_storage(auto_migrate=True)):
            with pytest.raises(SchemaAheadError, match=r"tm9001.*newer taskmgr"):
                storage.open()
        env = {"TASKMGR_DATABASE_URL": url, "TASKMGR_DB_SCHEMA": schema or ""}
        assert CliRunner().invoke(main, ["db", "check"], env=env).exit_code == 1
        upgrade = CliRunner().invoke(main, ["db", "upgrade"], env=env)
        assert upgrade.exit_code == 1
        assert "newer taskmgr" in upgrade.stderr
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_upgrading_at_once_both_succeed(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    env = {**os.environ, "TASKMGR_DATABASE_URL": url, "TASKMGR_DB_SCHEMA": schema}
    command = [sys.executable, "-m", "taskmgr", "db", "upgrade", "--json"]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    applied = sorted('"applied": true' in out for out, _ in outputs)
    assert applied == [False, True]  # the lock made the second one find it done
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        assert migrate.current_revision(engine, "taskmgr_", schema) == migrate.head_revision()
        assert _schema_diffs(engine, "taskmgr_", schema) == []
    finally:
        engine.dispose()


def test_subprocess_db_check_and_bad_app(tmp_path: object) -> None:
    env = {**os.environ, "TASKMGR_DATABASE_URL": f"sqlite:///{tmp_path}/sub.db"}
    env.pop("TASKMGR_APP", None)
    run = functools.partial(
        subprocess.run, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run([sys.executable, "-m", "taskmgr", "db", "check"]).returncode == 1
    assert run([sys.executable, "-m", "taskmgr", "db", "upgrade"]).returncode == 0
    assert run([sys.executable, "-m", "taskmgr", "db", "check"]).returncode == 0
    bad = run([sys.executable, "-m", "taskmgr", "jobs", "list", "--app", "nowhere_xyz:svc"])
    assert bad.returncode == 1
    assert bad.stderr == (
        "Error: app: module 'nowhere_xyz' not found "
        "(it must be importable: installed, or on sys.path)\n"
    )


def test_include_object_keeps_our_tables_out_of_host_autogenerate() -> None:
    ours = build_metadata("taskmgr_", None)
    host = sa.MetaData()
    theirs = sa.Table("orders", host, sa.Column("id", sa.Integer, primary_key=True))
    jobs = ours.tables["taskmgr_jobs"]
    assert migrate.include_object(theirs, "orders", "table", False, None) is True
    assert migrate.include_object(jobs, "taskmgr_jobs", "table", False, None) is False
    index = next(iter(jobs.indexes))
    assert migrate.include_object(index, index.name, "index", False, None) is False
    column = jobs.c.job_key
    assert migrate.include_object(column, "job_key", "column", False, None) is False
    other = functools.partial(migrate.include_object, prefix="myapp_")
    assert other(jobs, "taskmgr_jobs", "table", False, None) is True
    assert migrate.include_object(None, "taskmgr_alembic_version", "table", True, None) is False


def test_offline_sql_honours_prefix_and_schema() -> None:
    sql = migrate.offline_sql("postgresql", "app_", "sched")
    assert "CREATE TABLE sched.app_jobs" in sql
    assert "sched.app_alembic_version" in sql
    with pytest.raises(StorageError):
        migrate.offline_sql("postgresql", to="nope")


def test_the_packaged_files_name_the_head_as_alembic_does() -> None:
    """A start at the head is checked without Alembic, by the migrations' file names
    (``tmNNNN_*.py`` holds revision ``tmNNNN``, each the next of the one before)."""
    names = sorted(p.name for p in migrate.PACKAGED_VERSIONS.glob("tm*.py"))
    revisions = [r.revision for r in migrate.history()]
    assert [name[:6] for name in names] == revisions
    assert [f"tm{n:04d}" for n in range(1, len(revisions) + 1)] == revisions
    assert migrate.packaged_head() == migrate.head_revision()


def test_a_start_and_a_health_check_at_head_do_not_import_alembic(tmp_path: object) -> None:
    code = (
        "import sys; from taskmgr import SchedulerService; "
        f"s = SchedulerService('sqlite:///{tmp_path}/head.db'); s.open(); s.close(); "
        "assert 'alembic' in sys.modules; del sys.modules['alembic']; "
        "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('alembic')]; "
        f"s = SchedulerService('sqlite:///{tmp_path}/head.db'); s.open(); "
        "assert s.health().schema_current; s.close(); "
        "assert not [m for m in sys.modules if m.startswith('alembic')], 'alembic imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
