"""``taskmgr.alembic``'s filters on their own: what counts as taskmgr's (its prefix, in
its schema), and how the host's filters are composed (called for everything else,
their answer kept). The real autogenerate is in tests/migrations/test_host_alembic.py."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from taskmgr import alembic as tm_alembic
from taskmgr.storage.sqlalchemy.migrate import include_object as legacy_include_object


def _table(name: str, schema: str | None = None) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    table.schema = schema
    return table


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMGR_TABLE_PREFIX", raising=False)
    monkeypatch.delenv("TASKMGR_DB_SCHEMA", raising=False)


def test_taskmgrs_tables_and_their_parts_are_left_out() -> None:
    include = tm_alembic.include_object
    jobs = _table("taskmgr_jobs")
    index = sa.Index("ix_taskmgr_jobs_id", jobs.c.id)
    assert not include(jobs, "taskmgr_jobs", "table", True, None)
    assert not include(
        _table("taskmgr_alembic_version"), "taskmgr_alembic_version", "table", True, None
    )
    assert not include(index, index.name, "index", True, None)
    assert not include(jobs.c.id, "id", "column", True, None)
    orders = _table("orders")
    assert include(orders, "orders", "table", False, None)
    assert include(orders.c.id, "id", "column", False, None)


def test_the_hosts_filters_decide_everything_else() -> None:
    calls: list[tuple[Any, ...]] = []

    def host_object(*args: Any) -> bool:
        calls.append(args)
        return args[1] != "legacy"

    def host_name(name: str | None, type_: str, parents: Any) -> bool:
        calls.append((name, type_))
        return name != "other_schema"

    filters = tm_alembic.without_taskmgr(include_object=host_object, include_name=host_name)
    keep, name = filters["include_object"], filters["include_name"]
    assert not keep(_table("taskmgr_jobs"), "taskmgr_jobs", "table", True, None)
    assert calls == []  # taskmgr's are never shown to the host's filter
    assert keep(_table("orders"), "orders", "table", True, None)
    assert not keep(_table("legacy"), "legacy", "table", True, None)
    assert not name("taskmgr_executions", "table", {"schema_name": None})
    assert name("orders", "table", {"schema_name": None})
    assert not name("other_schema", "schema", {})
    assert not name("ix_1", "index", {"table_name": "taskmgr_jobs", "schema_name": None})
    assert [call[1] if len(call) == 5 else call[0] for call in calls] == [
        "orders",
        "legacy",
        "orders",
        "other_schema",
    ]


def test_a_schema_of_its_own_leaves_other_schemas_to_the_host() -> None:
    filters = tm_alembic.without_taskmgr(schema="sched")
    keep, name = filters["include_object"], filters["include_name"]
    assert not keep(_table("taskmgr_jobs", "sched"), "taskmgr_jobs", "table", True, None)
    # Alembic reports the default schema as None, whatever its name
    assert not keep(_table("taskmgr_jobs"), "taskmgr_jobs", "table", True, None)
    assert keep(_table("taskmgr_jobs", "elsewhere"), "taskmgr_jobs", "table", True, None)
    assert not name("taskmgr_jobs", "table", {"schema_name": "sched"})
    assert name("taskmgr_jobs", "table", {"schema_name": "elsewhere"})
    assert name("sched", "schema", {})  # the schema itself is the host's call


def test_prefix_and_schema_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMGR_TABLE_PREFIX", "sched_")
    assert not tm_alembic.include_object(_table("sched_jobs"), "sched_jobs", "table", True, None)
    assert tm_alembic.include_object(_table("taskmgr_jobs"), "taskmgr_jobs", "table", True, None)
    assert not tm_alembic.include_name("sched_jobs", "table", {"schema_name": None})
    assert "sched_alembic_version" in tm_alembic.table_names()
    monkeypatch.setenv("TASKMGR_DB_SCHEMA", "jobs")
    assert {t.schema for t in tm_alembic.metadata().tables.values()} == {"jobs"}


def test_the_earlier_filter_still_works() -> None:
    assert not legacy_include_object(_table("taskmgr_jobs"), "taskmgr_jobs", "table", True, None)
    assert legacy_include_object(_table("orders"), "orders", "table", True, None)
    assert not legacy_include_object(
        _table("app_jobs"), "app_jobs", "table", True, None, prefix="app_"
    )
