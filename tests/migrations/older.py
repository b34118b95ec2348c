"""A test's database at an older revision, to write rows into before upgrading it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate


@dataclass(frozen=True)
class OlderDatabase:
    engine: sa.Engine
    schema: str | None
    #: The environment that points ``taskmgr db`` at this database.
    env: dict[str, str]
    #: The jobs and executions tables as that revision has them.
    jobs: sa.Table
    executions: sa.Table


@contextmanager
def older_database(
    make_storage: Callable[..., SQLAlchemyStorage], revision: str
) -> Iterator[OlderDatabase]:
    """The database of ``make_storage`` migrated up to ``revision`` only."""
    probe = make_storage()
    url, schema = probe._url, probe.tables.metadata.schema
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        migrate.upgrade(engine, "taskmgr_", schema, to=revision)
        meta = sa.MetaData(schema=schema)
        yield OlderDatabase(
            engine=engine,
            schema=schema,
            env={"TASKMGR_DATABASE_URL": url, "TASKMGR_DB_SCHEMA": schema or ""},
            jobs=sa.Table("taskmgr_jobs", meta, autoload_with=engine),
            executions=sa.Table("taskmgr_executions", meta, autoload_with=engine),
        )
    finally:
        engine.dispose()
