"""The SQL backend: SQLite (one host) and PostgreSQL (any number of hosts).

``SQLAlchemyStorage`` is the storage; ``build_metadata`` gives the table model (for a
host's own Alembic ``include_object``), ``create_engine`` an engine with the settings
taskmgr relies on, and :mod:`.migrate` runs the packaged migrations.
"""

from __future__ import annotations

from taskmgr.storage.sqlalchemy.engine import create_engine
from taskmgr.storage.sqlalchemy.store import DEFAULT_URL, SQLAlchemyStorage
from taskmgr.storage.sqlalchemy.tables import build_metadata

__all__ = ["DEFAULT_URL", "SQLAlchemyStorage", "build_metadata", "create_engine"]
