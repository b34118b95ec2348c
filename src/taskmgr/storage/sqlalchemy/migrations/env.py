"""Alembic environment for taskmgr's packaged migrations.

Run by :mod:`taskmgr.storage.sqlalchemy.migrate`, which passes an open connection (or,
in offline ``--sql`` mode, a dialect name) and the table prefix/schema through
``config.attributes``; there is no ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "taskmgr migrations run through taskmgr.storage.sqlalchemy.migrate.upgrade() "
            "(or `taskmgr db upgrade`), which supply the connection"
        )
    prefix: str = config.attributes.get("taskmgr_table_prefix", "taskmgr_")
    schema: str | None = config.attributes.get("taskmgr_schema")
    context.configure(
        connection=connection,
        # Our own version table, so a host's Alembic history is never touched.
        version_table=f"{prefix}alembic_version",
        version_table_schema=schema,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Render the SQL instead of running it (``taskmgr db sql``)."""
    dialect: str = config.attributes.get("taskmgr_dialect", "postgresql")
    prefix: str = config.attributes.get("taskmgr_table_prefix", "taskmgr_")
    schema: str | None = config.attributes.get("taskmgr_schema")
    context.configure(
        dialect_name=dialect,
        version_table=f"{prefix}alembic_version",
        version_table_schema=schema,
        render_as_batch=dialect == "sqlite",
        transactional_ddl=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
