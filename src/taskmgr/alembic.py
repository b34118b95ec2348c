"""Keep taskmgr's tables out of a host application's own Alembic autogenerate.

taskmgr migrates its tables itself (``taskmgr db upgrade``, or on start), with a
version table of its own, so a host's Alembic history never holds them. A host whose
``env.py`` autogenerates against the database would still see them there, not in
its models, and propose to drop them. Its ``env.py`` leaves them out with the
filters of this module, composed with its own::

    from taskmgr.alembic import without_taskmgr

    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        **without_taskmgr(include_object=my_include_object),  # your filter, if any
    )

taskmgr's tables are those whose name starts with its table prefix (its version
table ``<prefix>alembic_version`` too, and any a newer taskmgr adds), in its schema.
The prefix and the schema are the arguments given, else the ``TASKMGR_*`` settings
(``TASKMGR_TABLE_PREFIX``, ``TASKMGR_DB_SCHEMA``), as for ``SchedulerService``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import sqlalchemy as sa

from taskmgr.settings import load_settings
from taskmgr.storage.sqlalchemy.migrate import owns_table, version_table
from taskmgr.storage.sqlalchemy.tables import build_metadata

__all__ = [
    "IncludeName",
    "IncludeObject",
    "include_name",
    "include_object",
    "metadata",
    "table_names",
    "without_taskmgr",
]

#: Alembic's ``include_object(object, name, type_, reflected, compare_to) -> bool``.
IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]
#: Alembic's ``include_name(name, type_, parent_names) -> bool``.
IncludeName = Callable[[str | None, str, Mapping[str, str | None]], bool]


class Filters(TypedDict):
    """The keyword arguments of ``context.configure`` that :func:`without_taskmgr` gives."""

    include_object: IncludeObject
    include_name: IncludeName


def _namespace(table_prefix: str | None, schema: str | None) -> tuple[str, str | None]:
    """The prefix and schema given, else the settings' (``TASKMGR_*``)."""
    if table_prefix is not None and schema is not None:
        return table_prefix, schema
    settings = load_settings()
    return (
        settings.table_prefix if table_prefix is None else table_prefix,
        settings.db_schema if schema is None else schema,
    )


def metadata(table_prefix: str | None = None, schema: str | None = None) -> sa.MetaData:
    """taskmgr's tables as SQLAlchemy ``MetaData``, at this version's newest revision
    (its version table aside), to look at or to refer to. Never add them to your own
    ``target_metadata``: taskmgr migrates them."""
    prefix, where = _namespace(table_prefix, schema)
    return build_metadata(prefix, where)


def table_names(table_prefix: str | None = None) -> frozenset[str]:
    """The names of the tables this version of taskmgr keeps, its version table
    included (without the schema)."""
    prefix, _ = _namespace(table_prefix, None)
    return frozenset({*build_metadata(prefix).tables, version_table(prefix)})


def without_taskmgr(
    *,
    include_object: IncludeObject | None = None,
    include_name: IncludeName | None = None,
    table_prefix: str | None = None,
    schema: str | None = None,
) -> Filters:
    """``include_object`` and ``include_name`` for ``context.configure``: taskmgr's
    tables (and their columns, indexes and constraints) are left out, and everything
    else goes to your own filters when given (else it is kept).

    ``schema``: where taskmgr's tables are (``SchedulerService(schema=...)``,
    ``TASKMGR_DB_SCHEMA``); your filters alone decide about everything outside.
    """
    prefix, where = _namespace(table_prefix, schema)
    host_object, host_name = include_object, include_name

    def composed_object(
        object: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        table = object if type_ == "table" else getattr(object, "table", None)
        table_name = name if type_ == "table" else getattr(table, "name", None)
        if owns_table(table_name, getattr(table, "schema", None), prefix, where):
            return False
        return host_object is None or host_object(object, name, type_, reflected, compare_to)

    def composed_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
        table_name = name if type_ == "table" else parent_names.get("table_name")
        if type_ != "schema" and owns_table(
            table_name, parent_names.get("schema_name"), prefix, where
        ):
            return False
        return host_name is None or host_name(name, type_, parent_names)

    return {"include_object": composed_object, "include_name": composed_name}


def include_object(
    object: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object`` that leaves taskmgr's tables out (prefix and
    schema from the settings); :func:`without_taskmgr` composes it with yours."""
    return without_taskmgr()["include_object"](object, name, type_, reflected, compare_to)


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Alembic's ``include_name`` that leaves taskmgr's tables out before they are
    even reflected (prefix and schema from the settings)."""
    return without_taskmgr()["include_name"](name, type_, parent_names)
