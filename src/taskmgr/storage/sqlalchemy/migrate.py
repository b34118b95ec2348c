"""Run taskmgr's packaged Alembic migrations from code.

The migrations live inside the package (``taskmgr.storage.sqlalchemy:migrations``)
with their own version table, ``<prefix>alembic_version``, so a host application's
own Alembic history is never read or written. Several processes may start at once:
on PostgreSQL the upgrade runs under an advisory lock, on SQLite inside one
``BEGIN IMMEDIATE`` transaction, and the current revision is read under that lock.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from taskmgr.exceptions import StorageError
from taskmgr.storage.sqlalchemy.engine import describe_error

__all__ = ["SCRIPT_LOCATION", "current_revision", "head_revision", "upgrade", "version_table"]

logger = logging.getLogger("taskmgr.storage")

SCRIPT_LOCATION = "taskmgr.storage.sqlalchemy:migrations"


def version_table(prefix: str) -> str:
    return f"{prefix}alembic_version"


def alembic_config(
    prefix: str = "taskmgr_", schema: str | None = None, connection: Connection | None = None
) -> Config:
    """An Alembic ``Config`` for the packaged migrations, built without an ini file."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["taskmgr_table_prefix"] = prefix
    config.attributes["taskmgr_schema"] = schema
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision shipped with this version of taskmgr."""
    head = _script().get_current_head()
    assert head is not None
    return head


def _current(connection: Connection, prefix: str, schema: str | None) -> tuple[str, ...]:
    context = MigrationContext.configure(
        connection,
        opts={"version_table": version_table(prefix), "version_table_schema": schema},
    )
    return tuple(context.get_current_heads())


def current_revision(
    engine: Engine, prefix: str = "taskmgr_", schema: str | None = None
) -> str | None:
    """The revision the database is at (None when taskmgr's schema is not there)."""
    with engine.connect() as connection:
        heads = _current(connection, prefix, schema)
    return heads[0] if heads else None


def lock_key(prefix: str, schema: str | None) -> int:
    # One lock per schema+prefix, so hosts with several taskmgr namespaces don't wait
    # on each other; a fixed high word keeps clear of most application lock ids.
    return (0x746D << 32) | zlib.crc32(f"{schema or ''}.{prefix}".encode())


@contextmanager
def _locked(connection: Connection, prefix: str, schema: str | None) -> Iterator[None]:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = lock_key(prefix, schema)
        # Another replica may be migrating: wait for it however long it takes (the
        # engine's lock_timeout is for claims, not for this).
        previous = connection.exec_driver_sql("SHOW lock_timeout").scalar_one()
        connection.exec_driver_sql("SET lock_timeout = 0")
        connection.execute(sa.select(sa.func.pg_advisory_lock(key)))
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            connection.execute(sa.select(sa.func.set_config("lock_timeout", previous, False)))
            connection.commit()
    elif dialect == "sqlite":
        # Hold SQLite's write lock from the version read to the commit.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    else:
        yield


def upgrade(engine: Engine, prefix: str = "taskmgr_", schema: str | None = None) -> bool:
    """Bring the schema to the newest revision. Returns whether anything was applied.

    :raises StorageError: the database is at a revision this taskmgr does not know
        (written by a newer version), or the upgrade failed.
    """
    script = _script()
    heads = set(script.get_heads())
    try:
        with engine.connect() as connection, _locked(connection, prefix, schema):
            current = _current(connection, prefix, schema)
            unknown = [rev for rev in current if not _known(script, rev)]
            if unknown:
                raise StorageError(
                    f"the database schema is at revision {', '.join(unknown)} "
                    f"(table {version_table(prefix)!r}), which this version of taskmgr does "
                    f"not know (newest known: {', '.join(sorted(heads))}); it was probably "
                    "migrated by a newer taskmgr: upgrade taskmgr, or point it at another "
                    "database"
                )
            if set(current) == heads:
                connection.rollback()
                return False
            logger.info(
                "migrating taskmgr schema from %s to %s",
                ", ".join(current) or "empty",
                ", ".join(sorted(heads)),
            )
            command.upgrade(alembic_config(prefix, schema, connection), "heads")
            connection.commit()
            return True
    except StorageError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"migrating the taskmgr schema failed: {describe_error(exc)}") from exc


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several types for unknown ids
        return False
