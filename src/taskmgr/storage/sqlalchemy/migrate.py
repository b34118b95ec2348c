"""Run taskmgr's packaged Alembic migrations from code (and ``taskmgr db ...``).

The migrations live inside the package (``taskmgr.storage.sqlalchemy:migrations``)
with their own version table, ``<prefix>alembic_version``, so a host application's
own Alembic history is never read or written. Several processes may upgrade at once:
on PostgreSQL the upgrade runs under an advisory lock, on SQLite inside one
``BEGIN IMMEDIATE`` transaction, and the current revision is re-read under that lock.

On start (:func:`prepare`), an empty database is created at the head revision; a
database behind the code is refused with the command to run (unless
``auto_migrate=True``); a database ahead of the code (migrated by a newer taskmgr)
is always refused. Rows are never deleted or rewritten by a start.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskmgr.exceptions import SchemaAheadError, SchemaBehindError, StorageError
from taskmgr.storage.sqlalchemy.engine import describe_error

# Alembic is imported where it is used: a start (or a health check) on a database at
# the packaged head never needs it (see packaged_head), and it costs a process ~10 MB.
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "PACKAGED_VERSIONS",
    "SCRIPT_LOCATION",
    "Revision",
    "SchemaStatus",
    "current_revision",
    "downgrade",
    "head_revision",
    "history",
    "include_object",
    "is_current",
    "offline_sql",
    "owns_table",
    "packaged_head",
    "prepare",
    "status",
    "upgrade",
    "version_table",
]

logger = logging.getLogger("taskmgr.storage")

SCRIPT_LOCATION = "taskmgr.storage.sqlalchemy:migrations"
#: The packaged migrations' folder.
PACKAGED_VERSIONS = Path(__file__).parent / "migrations" / "versions"
UPGRADE_HINT = "taskmgr db upgrade"

State = Literal["empty", "behind", "current", "ahead"]


def version_table(prefix: str) -> str:
    return f"{prefix}alembic_version"


def alembic_config(
    prefix: str = "taskmgr_",
    schema: str | None = None,
    connection: Connection | None = None,
    *,
    dialect: str | None = None,
    output: io.StringIO | None = None,
) -> Config:
    """An Alembic ``Config`` for the packaged migrations, built without an ini file."""
    from alembic.config import Config

    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["taskmgr_table_prefix"] = prefix
    config.attributes["taskmgr_schema"] = schema
    if dialect is not None:
        config.attributes["taskmgr_dialect"] = dialect
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


#: A packaged migration's file: ``tmNNNN_<words>.py`` holds revision ``tmNNNN``, the
#: next of the one before (a test holds the files to this).
_VERSION_FILE = re.compile(r"^(tm[0-9]{4})_[a-z0-9_]+\.py$")


@functools.cache
def packaged_head() -> str | None:
    """The newest packaged revision, told by the migrations' file names without
    importing Alembic; None when the files do not say (then Alembic is asked)."""
    try:
        names = [entry.name for entry in PACKAGED_VERSIONS.iterdir()]
    except OSError:  # pragma: no cover - packaged without its files (a zip)
        return None
    found = sorted(match.group(1) for name in names if (match := _VERSION_FILE.match(name)))
    return found[-1] if found else None


def _versions(connection: Connection, prefix: str, schema: str | None) -> list[str]:
    """The rows of the version table, read without Alembic ([] when it is missing)."""
    name = version_table(prefix)
    if not sa.inspect(connection).has_table(name, schema=schema):
        return []
    table = sa.table(name, sa.column("version_num"), schema=schema)
    return [str(v) for v in connection.execute(sa.select(table.c.version_num)).scalars()]


def is_current(engine: Engine, prefix: str = "taskmgr_", schema: str | None = None) -> bool:
    """Whether the database is at this taskmgr's newest revision."""
    head = packaged_head()
    if head is None:
        return current_revision(engine, prefix, schema) == head_revision()
    with engine.connect() as connection:
        return _versions(connection, prefix, schema) == [head]


def head_revision() -> str:
    """The newest revision shipped with this version of taskmgr."""
    head = _script().get_current_head()
    assert head is not None
    return head


@dataclass(frozen=True)
class Revision:
    """One packaged migration, oldest first in :func:`history`."""

    revision: str
    down_revision: str | None
    description: str


def history() -> list[Revision]:
    """Every packaged revision, oldest first."""
    revisions = list(_script().walk_revisions("base", "heads"))
    revisions.reverse()
    return [
        Revision(
            revision=rev.revision,
            down_revision=rev.down_revision if isinstance(rev.down_revision, str) else None,
            description=(rev.doc or "").strip(),
        )
        for rev in revisions
    ]


def _current(connection: Connection, prefix: str, schema: str | None) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

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


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database's schema is, compared with this version of taskmgr."""

    current: str | None
    head: str
    state: State

    @property
    def ok(self) -> bool:
        return self.state == "current"


def _state(script: ScriptDirectory, current: tuple[str, ...]) -> State:
    if not current:
        return "empty"
    if set(current) == set(script.get_heads()):
        return "current"
    if any(not _known(script, rev) for rev in current):
        return "ahead"
    return "behind"


def status(engine: Engine, prefix: str = "taskmgr_", schema: str | None = None) -> SchemaStatus:
    """The database's revision and how it compares with the code's head.

    :raises StorageError: the database could not be read.
    """
    script = _script()
    try:
        with engine.connect() as connection:
            current = _current(connection, prefix, schema)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"reading the taskmgr schema version failed: {describe_error(exc)}"
        ) from exc
    head = script.get_current_head()
    assert head is not None
    return SchemaStatus(current[0] if current else None, head, _state(script, current))


def lock_key(prefix: str, schema: str | None) -> int:
    # One lock per schema+prefix, so hosts with several taskmgr namespaces don't wait
    # on each other; a fixed high word keeps clear of most application lock ids.
    return (0x746D << 32) | zlib.crc32(f"{schema or ''}.{prefix}".encode())


#: PostgreSQL settings of taskmgr's connections that a migration runs without.
_UNBOUNDED_WHILE_MIGRATING = ("lock_timeout", "idle_in_transaction_session_timeout")


@contextmanager
def _locked(connection: Connection, prefix: str, schema: str | None) -> Iterator[None]:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = lock_key(prefix, schema)
        # Another replica may be migrating: wait for it however long it takes, and
        # let a migration take its time between statements on a busy host (the
        # engine's lock and idle-in-transaction timeouts are for claims, not for this).
        previous = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in _UNBOUNDED_WHILE_MIGRATING
        }
        for name in _UNBOUNDED_WHILE_MIGRATING:
            connection.exec_driver_sql(f"SET {name} = 0")
        connection.execute(sa.select(sa.func.pg_advisory_lock(key)))
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            for name, value in previous.items():
                connection.execute(sa.select(sa.func.set_config(name, value, False)))
            connection.commit()
    elif dialect == "sqlite":
        # Hold SQLite's write lock from the version read to the commit.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    else:
        yield


def _ahead_error(unknown: list[str], prefix: str, heads: set[str]) -> SchemaAheadError:
    return SchemaAheadError(
        f"the database schema is at revision {', '.join(unknown)} "
        f"(table {version_table(prefix)!r}), which this version of taskmgr does "
        f"not know (newest known: {', '.join(sorted(heads))}); it was probably "
        "migrated by a newer taskmgr: upgrade taskmgr, or point it at another database"
    )


def upgrade(
    engine: Engine, prefix: str = "taskmgr_", schema: str | None = None, to: str = "heads"
) -> bool:
    """Bring the schema to ``to`` (default: the newest revision). Returns whether
    anything was applied. Safe to run from several processes at once.

    :raises SchemaAheadError: the database is at a revision this taskmgr does not know
        (written by a newer version).
    :raises StorageError: the upgrade failed.
    """
    from alembic import command

    return _migrate(engine, prefix, schema, to, command.upgrade, create_schema=True)


def downgrade(engine: Engine, to: str, prefix: str = "taskmgr_", schema: str | None = None) -> bool:
    """Take the schema back to revision ``to`` (``base``: drop taskmgr's tables), for
    going back to an older taskmgr. Returns whether anything was applied; each
    revision's downgrade keeps the rows (see its docstring).

    :raises SchemaAheadError: the database is at a revision this taskmgr does not know.
    :raises StorageError: ``to`` is unknown, or the downgrade failed.
    """
    from alembic import command

    return _migrate(engine, prefix, schema, to, command.downgrade)


def _migrate(
    engine: Engine,
    prefix: str,
    schema: str | None,
    to: str,
    step: Callable[[Config, str], None],
    *,
    create_schema: bool = False,
) -> bool:
    script = _script()
    heads = set(script.get_heads())
    try:
        with engine.connect() as connection, _locked(connection, prefix, schema):
            current = _current(connection, prefix, schema)
            unknown = [rev for rev in current if not _known(script, rev)]
            if unknown:
                raise _ahead_error(unknown, prefix, heads)
            if to == "heads":
                wanted = heads
            elif to == "base":
                wanted = set()
            else:
                wanted = {script.get_revision(to).revision}
            if set(current) == wanted:
                connection.rollback()
                return False
            logger.info(
                "migrating taskmgr schema from %s to %s",
                ", ".join(current) or "empty",
                ", ".join(sorted(wanted)) or "empty",
            )
            if create_schema:
                _ensure_schema(connection, schema)
            step(alembic_config(prefix, schema, connection), to)
            connection.commit()
            return True
    except StorageError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"migrating the taskmgr schema failed: {describe_error(exc)}") from exc
    except Exception as exc:  # alembic's own errors: unknown target revision, etc.
        if type(exc).__module__.startswith("alembic"):
            raise StorageError(f"migrating the taskmgr schema failed: {exc}") from exc
        raise


def _ensure_schema(connection: Connection, schema: str | None) -> None:
    """Create taskmgr's PostgreSQL schema if it is missing. Looked up first: ``CREATE
    SCHEMA IF NOT EXISTS`` needs the right to create schemas even when it exists."""
    if schema is None or connection.dialect.name != "postgresql":
        return
    found = connection.execute(
        sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
    ).first()
    if found is None:
        logger.info("creating the schema %s for taskmgr's tables", schema)
        connection.execute(sa.schema.CreateSchema(schema))


def prepare(
    engine: Engine,
    prefix: str = "taskmgr_",
    schema: str | None = None,
    *,
    auto_migrate: bool = False,
) -> None:
    """The start-up rule: create an empty database at head; refuse one behind the
    code (unless ``auto_migrate``) or ahead of it.

    :raises SchemaBehindError: the database needs ``taskmgr db upgrade``.
    :raises SchemaAheadError: the database was migrated by a newer taskmgr.
    """
    if _at_packaged_head(engine, prefix, schema):
        return  # the usual start: nothing to do, and no need of Alembic to know it
    found = status(engine, prefix, schema)
    if found.state == "current":
        return
    if found.state == "ahead":
        raise _ahead_error([found.current or "?"], prefix, set(_script().get_heads()))
    if found.state == "behind" and not auto_migrate:
        raise SchemaBehindError(
            f"the database schema is at revision {found.current}, behind this taskmgr "
            f"({found.head}): run `{UPGRADE_HINT}` (or start with auto_migrate=True)"
        )
    upgrade(engine, prefix, schema)


def _at_packaged_head(engine: Engine, prefix: str, schema: str | None) -> bool:
    head = packaged_head()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            return _versions(connection, prefix, schema) == [head]
    except sa.exc.SQLAlchemyError:
        return False  # the full check says what is wrong


def offline_sql(
    dialect: str,
    prefix: str = "taskmgr_",
    schema: str | None = None,
    *,
    start: str | None = None,
    to: str = "heads",
) -> str:
    """The SQL that upgrades from ``start`` (default: an empty database) to ``to``,
    for a DBA to review or run (Alembic's offline ``--sql`` mode)."""
    from alembic import command

    output = io.StringIO()
    config = alembic_config(prefix, schema, dialect=dialect, output=output)
    target = to if start is None else f"{start}:{to}"
    try:
        command.upgrade(config, target, sql=True)
    except Exception as exc:
        if type(exc).__module__.startswith("alembic"):
            raise StorageError(f"cannot render the migration SQL: {exc}") from exc
        raise
    return output.getvalue()


def include_object(
    object: Any,
    name: str | None,
    type_: str,
    reflected: bool,
    compare_to: Any,
    *,
    prefix: str = "taskmgr_",
) -> bool:
    """For a host's own Alembic ``env.py``: leave taskmgr's tables (and their indexes
    and constraints) out of the host's autogenerate, whatever their schema. The
    public, composable form is :mod:`taskmgr.alembic` (``without_taskmgr``).
    """
    table = name if type_ == "table" else getattr(getattr(object, "table", None), "name", None)
    return not owns_table(table, None, prefix, None)


def owns_table(name: str | None, schema: str | None, prefix: str, own_schema: str | None) -> bool:
    """Whether the table ``name`` in ``schema`` is one of taskmgr's: its name has
    taskmgr's prefix (the version table's too, and the tables a newer taskmgr adds),
    and, when taskmgr's tables are in a schema of their own (``own_schema``), it is
    there or in the default one (Alembic reports the default schema as None, even
    when taskmgr's is that schema by name). Other schemas are the host's business."""
    if name is None or not name.startswith(prefix):
        return False
    return schema is None or own_schema is None or schema == own_schema


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several types for unknown ids
        return False
