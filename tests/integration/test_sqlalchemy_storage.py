"""SQLAlchemyStorage specifics: SQLite settings and locking, migrations, naming,
datetime fidelity and driver-error translation, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import taskmgr.storage
from taskmgr.core.models import ExecutionStatus, ExecutionTrigger
from taskmgr.exceptions import ServiceStateError, StorageError
from taskmgr.storage.base import ExecutionFilter
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, build_metadata, create_engine, migrate
from tests.contract.helpers import (
    T0,
    add_job,
    fire_all,
    instance,
    new_execution,
    outcome,
    running,
)
from tests.services import require_postgres

MakeStorage = Callable[..., SQLAlchemyStorage]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'taskmgr.db'}"


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema: (url, schema)."""
    url = require_postgres()
    schema = f"tmi_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield url, schema
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStorage]:
    """Builds (unopened) storages on one fresh database; closes them all at the end."""
    made: list[SQLAlchemyStorage] = []
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'taskmgr.db'}", None
    else:
        url, schema = request.getfixturevalue("pg_schema")

    def make(**kwargs: Any) -> SQLAlchemyStorage:
        if "engine" not in kwargs:
            kwargs.setdefault("url", url)
        kwargs.setdefault("schema", schema)
        storage = SQLAlchemyStorage(**kwargs)
        made.append(storage)
        return storage

    try:
        yield make
    finally:
        for storage in made:
            storage.close()


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.strip().split()[0].upper() + " " + statement.strip()[:60])

    return seen


def _schema_diffs(engine: sa.Engine, prefix: str, schema: str | None) -> list[Any]:
    def ours(name: str | None, type_: str, parent: Any) -> bool:
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return bool(name and name.startswith(prefix) and name != f"{prefix}alembic_version")
        return True

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_schemas": schema is not None,
                "include_name": ours,
            },
        )
        return list(compare_metadata(context, build_metadata(prefix, schema)))


# -- SQLite ------------------------------------------------------------------------


def test_sqlite_runs_in_wal_with_busy_timeout(sqlite_url: str) -> None:
    storage = SQLAlchemyStorage(sqlite_url)
    storage.open()
    try:
        with storage.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        storage.close()


def test_sqlite_writes_begin_immediate_and_reads_do_not(sqlite_url: str) -> None:
    storage = SQLAlchemyStorage(sqlite_url)
    storage.open()
    try:
        seen = _statements(storage.engine)
        add_job(storage, "j", next_run_at=T0)
        assert seen[0] == "BEGIN BEGIN IMMEDIATE"
        seen.clear()
        storage.claim(now=T0, owner="o", limit=10, planner=fire_all)
        assert seen[0] == "BEGIN BEGIN IMMEDIATE"
        seen.clear()
        storage.get_job("j")
        assert seen[0] == "BEGIN BEGIN"
    finally:
        storage.close()


def test_sqlite_writer_waits_for_another_process_lock(sqlite_url: str, tmp_path: Path) -> None:
    """A write blocked by another connection's write lock waits (busy timeout) instead of
    failing, and goes through once the lock is released."""
    storage = SQLAlchemyStorage(sqlite_url)
    storage.open()
    try:
        import sqlite3

        other = sqlite3.connect(tmp_path / "taskmgr.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        done = threading.Event()

        def write() -> None:
            add_job(storage, "waiting", next_run_at=T0)
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.5)  # blocked behind the other writer
        other.execute("COMMIT")
        other.close()
        thread.join(timeout=10)
        assert done.is_set()
        assert storage.get_job("waiting").key == "waiting"
    finally:
        storage.close()


def test_two_engines_claiming_never_double_claim(make_storage: MakeStorage) -> None:
    storages = [make_storage() for _ in range(3)]
    for storage in storages:
        storage.open()
    for n in range(30):
        add_job(storages[0], f"job-{n}", next_run_at=T0)
    claimed: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(storages) * 2)

    def claimer(storage: SQLAlchemyStorage, owner: str) -> None:
        try:
            barrier.wait(timeout=30)
            for step in range(4):
                got = storage.claim(
                    now=T0 + step * timedelta(minutes=1), owner=owner, limit=7, planner=fire_all
                )
                claimed.extend(c.execution.id for c in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=claimer, args=(storage, f"o{n}-{k}"))
        for n, storage in enumerate(storages)
        for k in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(claimed) == len(set(claimed))
    rows = storages[0].list_executions(ExecutionFilter(), limit=10_000)
    slots = [(e.job_id, e.scheduled_for, e.attempt) for e in rows]
    assert len(slots) == len(set(slots)) == len(claimed)


# -- migrations ----------------------------------------------------------------------


def test_migrations_create_exactly_the_model(make_storage: MakeStorage) -> None:
    storage = make_storage()
    storage.open()
    assert _schema_diffs(storage.engine, "taskmgr_", storage.tables.metadata.schema) == []


def test_version_table_is_our_own(make_storage: MakeStorage) -> None:
    probe = make_storage()
    engine = create_engine(probe._url)  # the host's engine
    schema = probe.tables.metadata.schema
    host = sa.MetaData(schema=schema)
    host_versions = sa.Table("alembic_version", host, sa.Column("version_num", sa.String(32)))
    with engine.begin() as conn:
        host.create_all(conn)
        conn.execute(sa.insert(host_versions).values(version_num="host_rev_1"))
    try:
        storage = make_storage(engine=engine)
        storage.open()
        with engine.connect() as conn:
            assert conn.execute(sa.select(host_versions.c.version_num)).scalars().all() == [
                "host_rev_1"
            ]
            names = set(sa.inspect(conn).get_table_names(schema=schema))
        assert {"taskmgr_alembic_version", "taskmgr_jobs", "alembic_version"} <= names
        assert migrate.current_revision(engine, "taskmgr_", schema) == migrate.head_revision()
        storage.close()
        with engine.connect() as conn:  # close() left the host's engine usable
            assert conn.execute(sa.select(1)).scalar() == 1
    finally:
        engine.dispose()


def test_open_on_a_migrated_database_changes_nothing(make_storage: MakeStorage) -> None:
    first = make_storage()
    first.open()
    add_job(first, "kept")
    engine = create_engine(first._url)
    try:
        seen = _statements(engine)
        second = make_storage(engine=engine)
        second.open()
        second.open()  # idempotent
        ddl = [s for s in seen if s.split()[0] in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE"}]
        assert ddl == []
        assert second.get_job("kept").key == "kept"
        assert migrate.upgrade(engine, "taskmgr_", first.tables.metadata.schema) is False
    finally:
        second.close()
        engine.dispose()


def test_unknown_revision_is_refused(make_storage: MakeStorage) -> None:
    first = make_storage()
    first.open()
    table = sa.table("taskmgr_alembic_version", sa.column("version_num"))
    table.schema = first.tables.metadata.schema
    with first.engine.begin() as conn:
        conn.execute(sa.update(table).values(version_num="tm9999"))
    first.close()
    newer = make_storage()
    with pytest.raises(StorageError, match=r"tm9999.*newer taskmgr"):
        newer.open()
    with pytest.raises(ServiceStateError):
        newer.get_job("x")  # still closed


def test_concurrent_first_opens_migrate_once(make_storage: MakeStorage) -> None:
    storages = [make_storage() for _ in range(4)]
    barrier = threading.Barrier(len(storages))
    errors: list[BaseException] = []

    def opener(storage: SQLAlchemyStorage) -> None:
        try:
            barrier.wait(timeout=30)
            storage.open()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(s,)) for s in storages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    schema = storages[0].tables.metadata.schema
    head = migrate.head_revision()
    assert migrate.current_revision(storages[0].engine, "taskmgr_", schema) == head


def test_custom_table_prefix(make_storage: MakeStorage) -> None:
    storage = make_storage(table_prefix="myapp_sched_")
    storage.open()
    schema = storage.tables.metadata.schema
    add_job(storage, "prefixed", next_run_at=T0)
    assert storage.claim(now=T0, owner="o", limit=10, planner=fire_all) != []
    with storage.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names(schema=schema))
    assert names == {
        "myapp_sched_jobs",
        "myapp_sched_executions",
        "myapp_sched_instances",
        "myapp_sched_audit",
        "myapp_sched_pauses",
        "myapp_sched_windows",
        "myapp_sched_incidents",
        "myapp_sched_alembic_version",
    }
    assert _schema_diffs(storage.engine, "myapp_sched_", schema) == []
    # A second namespace in the same database is independent.
    other = make_storage()
    other.open()
    assert other.list_jobs() == []


@pytest.mark.parametrize("prefix", ["", "Upper_", "1abc_", "a" * 21, "with space"])
def test_bad_table_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        SQLAlchemyStorage("sqlite://", table_prefix=prefix)


# -- values and errors -------------------------------------------------------------


@pytest.mark.postgres
def test_text_is_ordered_by_code_point_whatever_the_collation(
    pg_schema: tuple[str, str],
) -> None:
    """Keys and instance ids sort as the contract says (code point order, as in Python
    and SQLite) even where the columns use a linguistic collation."""
    url, schema = pg_schema
    storage = SQLAlchemyStorage(url, schema=schema)
    storage.open()
    try:
        with storage.engine.begin() as conn:
            icu = conn.exec_driver_sql(
                "SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'"
            ).first()
            if icu is None:
                pytest.skip("this PostgreSQL has no ICU collations")
            for table, column in (("jobs", "job_key"), ("instances", "id")):
                conn.exec_driver_sql(
                    f'ALTER TABLE "{schema}".taskmgr_{table} ALTER COLUMN {column} '
                    'TYPE varchar(255) COLLATE "en-US-x-icu"'
                )
        keys = ["a_b", "B", "a-b", "a", "a.b", "Z9"]
        for key in keys:
            add_job(storage, key)
        assert [job.key for job in storage.list_jobs()] == sorted(keys)
        assert [job.key for job in storage.list_jobs(after_key="a", limit=2)] == ["a-b", "a.b"]
        for instance_id in ("i-b", "I-c", "i-a"):
            storage.register_instance(instance(instance_id))  # the same started_at
        assert [i.id for i in storage.list_instances()] == ["i-b", "i-a", "I-c"]
    finally:
        storage.close()


def test_aware_datetimes_round_trip_exactly(make_storage: MakeStorage) -> None:
    storage = make_storage()
    storage.open()
    odd = timezone(timedelta(hours=-3, minutes=-30))
    when = datetime(2031, 12, 31, 20, 59, 59, 999999, tzinfo=odd)
    job = add_job(storage, "tz", next_run_at=when, now=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    loaded = storage.get_job("tz")
    assert loaded.next_run_at == when
    assert loaded.next_run_at is not None
    assert loaded.next_run_at.tzinfo == UTC
    assert loaded.next_run_at.microsecond == 999999
    assert loaded.created_at == datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    # Comparisons in SQL use the instant, not the text: due at exactly `when`.
    assert storage.claim(now=when, owner="o", limit=10, planner=fire_all)[0].job.id == job.id


def test_driver_errors_become_storage_errors(make_storage: MakeStorage) -> None:
    storage = make_storage()
    storage.open()
    job = add_job(storage, "nul")
    run = storage.add_execution(running(job, "o"))
    if storage.engine.dialect.name == "postgresql":
        # PostgreSQL text cannot hold NUL: the driver error is translated, nothing written.
        with pytest.raises(StorageError) as info:
            storage.record_outcomes(
                [outcome(run, "o", status=ExecutionStatus.FAILED, error_message="a\x00b")]
            )
        assert isinstance(info.value.__cause__, sa.exc.SQLAlchemyError)
        assert storage.get_execution(run.id).status is ExecutionStatus.RUNNING
    # Too long for the column: PostgreSQL refuses (translated), SQLite does not check.
    too_long = new_execution(job, id="x" * 40, scheduled_for=T0 + timedelta(minutes=1))
    if storage.engine.dialect.name == "postgresql":
        with pytest.raises(StorageError) as info:
            storage.add_execution(too_long)
        assert isinstance(info.value.__cause__, sa.exc.SQLAlchemyError)
    else:
        assert storage.add_execution(too_long).id == too_long.id


def test_unreachable_database_is_a_storage_error(tmp_path: Path) -> None:
    storage = SQLAlchemyStorage(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")  # no I/O yet
    with pytest.raises(StorageError):
        storage.open()
    with pytest.raises(ServiceStateError):
        storage.get_job("x")


def test_url_defaults_to_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("TASKMGR_DATABASE_URL", url)
    storage = SQLAlchemyStorage()
    assert not (tmp_path / "from-env.db").exists()  # the constructor does no I/O
    storage.open()
    try:
        assert (tmp_path / "from-env.db").exists()
    finally:
        storage.close()
    monkeypatch.delenv("TASKMGR_DATABASE_URL")
    assert "sqlite:///taskmgr.db" in repr(SQLAlchemyStorage())


def test_close_disposes_only_its_own_engine(sqlite_url: str) -> None:
    own = SQLAlchemyStorage(sqlite_url)
    own.open()
    engine = own.engine
    own.close()
    own.close()  # idempotent
    assert engine.pool.checkedout() == 0
    with pytest.raises(ServiceStateError):
        own.list_jobs()
    own.open()  # can be reopened
    assert own.list_jobs() == []
    own.close()


def test_storage_package_exports() -> None:
    assert taskmgr.storage.SQLAlchemyStorage is SQLAlchemyStorage
    assert set(taskmgr.storage.__all__) == {"MemoryStorage", "SQLAlchemyStorage", "Storage"}
    with pytest.raises(AttributeError):
        _ = taskmgr.storage.NoSuchThing  # type: ignore[attr-defined]


def test_a_plain_sqlite_engine_passed_in_works(sqlite_url: str) -> None:
    """An engine made without taskmgr's helper (pysqlite's own transaction handling on)
    still gets BEGIN IMMEDIATE writes, savepoints and claims right."""
    engine = sa.create_engine(sqlite_url)
    storage = SQLAlchemyStorage(engine=engine)
    try:
        storage.open()
        job = add_job(storage, "plain", next_run_at=T0)
        storage.add_execution(
            new_execution(
                job,
                scheduled_for=T0,
                status=ExecutionStatus.MISSED,
                trigger=ExecutionTrigger.SCHEDULE,
            )
        )
        # The advance conflicts with the existing slot: its savepoint rolls back alone.
        assert storage.claim(now=T0, owner="o", limit=10, planner=fire_all) == []
        assert storage.get_job("plain").next_run_at == T0
        with pytest.raises(ValueError, match="either url or engine"):
            SQLAlchemyStorage("sqlite://", engine=engine)
    finally:
        storage.close()
        engine.dispose()


def test_repr_hides_the_password_and_bad_urls_fail_on_open() -> None:
    assert "secret" not in repr(SQLAlchemyStorage("postgresql+psycopg://u:secret@db.invalid/x"))
    broken = SQLAlchemyStorage("not a url")
    assert "not a url" not in repr(broken)
    with pytest.raises(StorageError, match="cannot use database URL"):
        broken.open()
