"""A host application's own Alembic environment on PostgreSQL, next to taskmgr's tables:
its autogenerate, with ``taskmgr.alembic.without_taskmgr`` in ``env.py``, proposes
nothing, whether taskmgr's tables share the host's schema or have one of their own,
and composed with the host's own filters.

Each test gets fresh schemas; the host's connections use one of them as their default
(``search_path``), as a host's own database would. The host's tables are created the
way its migrations would leave them, taskmgr's by taskmgr.
"""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import alembic
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from taskmgr import SchedulerService
from taskmgr.alembic import metadata, table_names, without_taskmgr
from taskmgr.storage.sqlalchemy import migrate
from tests.services import require_postgres

pytestmark = pytest.mark.postgres

HOST_MODELS = '''
"""The host application's models."""
import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    total: Mapped[float] = mapped_column(sa.Numeric(10, 2))
    placed_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
'''

#: The host's env.py, as docs/fastapi.md shows it.
PLAIN_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

from hostmodels import Base
from taskmgr.alembic import without_taskmgr

config = context.config

engine = engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, **without_taskmgr()
    )
    with context.begin_transaction():
        context.run_migrations()
"""

#: A host with filters of its own: one autogenerate over the schemas it names, a legacy
#: table it does not model. taskmgr's schema comes from TASKMGR_DB_SCHEMA.
COMBINED_ENV = """
import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from hostmodels import Base
from taskmgr.alembic import without_taskmgr

config = context.config
SCHEMAS = {None, os.environ["TASKMGR_DB_SCHEMA"]}


def my_include_name(name, type_, parent_names):
    return name in SCHEMAS if type_ == "schema" else True


def my_include_object(object, name, type_, reflected, compare_to):
    return not (type_ == "table" and name == "legacy_audit")


engine = engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_schemas=True,
        **without_taskmgr(include_object=my_include_object, include_name=my_include_name),
    )
    with context.begin_transaction():
        context.run_migrations()
"""

INI = """
[alembic]
script_location = %(here)s/migrations
prepend_sys_path = %(here)s
path_separator = os
sqlalchemy.url = {url}
"""


class Host:
    """A host project in a temporary directory, on its own default schema."""

    def __init__(self, root: Path, url: sa.URL, env_py: str) -> None:
        self.root = root
        self.url = url
        migrations = root / "migrations"
        (migrations / "versions").mkdir(parents=True)
        template = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"
        shutil.copy(template, migrations / "script.py.mako")
        (migrations / "env.py").write_text(env_py)
        (root / "hostmodels.py").write_text(HOST_MODELS)
        shown = url.render_as_string(hide_password=False).replace("%", "%%")
        (root / "alembic.ini").write_text(INI.format(url=shown))
        spec = importlib.util.spec_from_file_location(
            f"hostmodels_{uuid.uuid4().hex[:8]}", root / "hostmodels.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.metadata: sa.MetaData = module.Base.metadata

    def autogenerate(self) -> list[str]:
        """``alembic revision --autogenerate``: the statements of the new revision's
        ``upgrade()`` (its comments and docstring aside)."""
        config = Config(str(self.root / "alembic.ini"))
        script = command.revision(config, message="check", autogenerate=True)
        assert script is not None and not isinstance(script, list)
        text = Path(script.path).read_text()
        upgrade = text.split("def upgrade()", 1)[1].split("def downgrade()", 1)[0]
        lines = [line.strip() for line in upgrade.splitlines()[1:]]
        return [line for line in lines if line and not line.startswith(("#", '"""'))]

    def diffs(self, engine: sa.Engine, **opts: Any) -> list[Any]:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts=opts)
            return list(compare_metadata(context, self.metadata))


@pytest.fixture
def schemas(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``make(label)`` names a fresh schema, dropped after the test."""
    for name in ("TASKMGR_DB_SCHEMA", "TASKMGR_TABLE_PREFIX", "TASKMGR_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    admin = sa.create_engine(require_postgres(), poolclass=sa.NullPool)
    made: list[str] = []

    def make(label: str) -> str:
        name = f"{label}_{uuid.uuid4().hex[:10]}"
        made.append(name)
        return name

    try:
        yield make
    finally:
        with admin.begin() as conn:
            for name in made:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()


def _host_url(schema: str) -> sa.URL:
    """The host's URL: its default schema is ``schema`` (created here)."""
    url = sa.make_url(require_postgres())
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    return url.update_query_dict({"options": f"-csearch_path={schema}"})


def _removed_tables(diffs: list[Any]) -> set[str]:
    return {diff[1].name for diff in diffs if diff[0] == "remove_table"}


def test_autogenerate_is_empty_with_taskmgr_in_the_hosts_schema(
    tmp_path: Path, schemas: Callable[[str], str]
) -> None:
    url = _host_url(schemas("host"))
    host = Host(tmp_path, url, PLAIN_ENV)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        host.metadata.create_all(engine)  # the host's own migrations, applied
        service = SchedulerService(url.render_as_string(hide_password=False))
        service.open()  # taskmgr creates its tables
        service.close()

        assert host.autogenerate() == ["pass"]

        # without the filter, taskmgr's tables would be dropped, indexes and all
        unfiltered = _removed_tables(host.diffs(engine))
        assert unfiltered == table_names()
        filtered = host.diffs(engine, **without_taskmgr())
        assert filtered == []
    finally:
        engine.dispose()


def test_autogenerate_is_empty_with_taskmgr_in_its_own_schema_and_the_hosts_filters(
    tmp_path: Path, schemas: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _host_url(schemas("host"))
    own = schemas("sched")  # not created: taskmgr creates the schema it is given
    monkeypatch.setenv("TASKMGR_DB_SCHEMA", own)
    host = Host(tmp_path, url, COMBINED_ENV)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        host.metadata.create_all(engine)
        with engine.begin() as conn:  # a table the host keeps but does not model
            conn.exec_driver_sql("CREATE TABLE legacy_audit (id integer PRIMARY KEY)")
        service = SchedulerService(url.render_as_string(hide_password=False), schema=own)
        service.open()  # creates its schema, then its tables there
        service.close()
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names(schema=own)) == table_names()
            assert set(sa.inspect(conn).get_table_names()) == {
                "customers",
                "orders",
                "legacy_audit",
            }

        assert host.autogenerate() == ["pass"]

        def mine_only(name: str | None, type_: str, parent_names: Any) -> bool:
            return name in {None, own} if type_ == "schema" else True

        def no_legacy(object: Any, name: str | None, type_: str, *rest: Any) -> bool:
            return not (type_ == "table" and name == "legacy_audit")

        both = {"include_schemas": True}
        # each filter is needed: the host's alone keeps taskmgr's tables ...
        hosts_only = host.diffs(engine, **both, include_name=mine_only, include_object=no_legacy)
        assert _removed_tables(hosts_only) == table_names()
        # ... taskmgr's alone keeps the legacy table ...
        ours_only = host.diffs(engine, **both, **without_taskmgr(include_name=mine_only))
        assert _removed_tables(ours_only) == {"legacy_audit"}
        # ... and composed, nothing is left
        composed = without_taskmgr(include_object=no_legacy, include_name=mine_only)
        assert host.diffs(engine, **both, **composed) == []
    finally:
        engine.dispose()


def test_the_metadata_and_names_are_taskmgrs_tables() -> None:
    found = metadata(table_prefix="app_", schema="sched")
    assert {table.schema for table in found.tables.values()} == {"sched"}
    assert {table.name for table in found.tables.values()} | {"app_alembic_version"} == (
        table_names("app_")
    )
    assert migrate.version_table("app_") in table_names("app_")
