"""The URL taskmgr's own (sync) engine connects with, from the host's URL: an asyncio
driver becomes the sync driver of the same database, asyncpg's options become libpq's,
PostgreSQL connections are named ``taskmgr``, and what cannot be translated is refused
with a ``DatabaseURLError`` naming it, before anything connects. No database needed."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskmgr import DatabaseURLError, InvalidInputError, SchedulerService, TaskmgrSettings
from taskmgr.storage import MemoryStorage
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, create_engine
from taskmgr.storage.sqlalchemy.pool import TrimmingPool
from taskmgr.storage.sqlalchemy.urls import engine_url

HOST = "u:pw@db.invalid:5433/app"


def translated(url: str) -> tuple[str, dict[str, object]]:
    target = engine_url(url)
    return target.url.render_as_string(hide_password=False), target.connect_args


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # the sync driver of the same database, credentials and host kept
        (f"postgresql+asyncpg://{HOST}", f"postgresql+psycopg://{HOST}?application_name=taskmgr"),
        (
            f"postgresql+psycopg_async://{HOST}?sslmode=verify-full",
            f"postgresql+psycopg://{HOST}?application_name=taskmgr&sslmode=verify-full",
        ),
        ("sqlite+aiosqlite:////srv/app.db", "sqlite+pysqlite:////srv/app.db"),
        ("sqlite+aiosqlite:///app.db?timeout=20", "sqlite+pysqlite:///app.db?timeout=20"),
        # asyncpg's names for libpq's options
        (
            f"postgresql+asyncpg://{HOST}?ssl=verify_full&timeout=2.5",
            f"postgresql+psycopg://{HOST}?application_name=taskmgr&connect_timeout=3"
            "&sslmode=verify-full",
        ),
        (
            f"postgresql+asyncpg://{HOST}?command_timeout=1.5&target_session_attrs=read-write",
            f"postgresql+psycopg://{HOST}?application_name=taskmgr"
            "&options=-c statement_timeout%3D1500&target_session_attrs=read-write",
        ),
        (  # libpq's own options kept, the timeout added to them
            f"postgresql+asyncpg://{HOST}?command_timeout=2&options=-c%20jit%3Doff",
            f"postgresql+psycopg://{HOST}?application_name=taskmgr"
            "&options=-c jit%3Doff -c statement_timeout%3D2000",
        ),
        (
            f"postgresql+asyncpg://{HOST}?direct_tls=true&ssl=require",
            f"postgresql+psycopg://{HOST}?application_name=taskmgr&sslmode=require"
            "&sslnegotiation=direct",
        ),
        # libpq's own keywords pass; the URL's own name wins over taskmgr's
        (
            f"postgresql+asyncpg://{HOST}?application_name=billing&sslrootcert=/ca.pem",
            f"postgresql+psycopg://{HOST}?application_name=billing&sslrootcert=/ca.pem",
        ),
        # several hosts: SQLAlchemy reads them alike for both drivers
        (
            "postgresql+asyncpg://u@/app?host=a:5432&host=b:5433",
            "postgresql+psycopg://u@/app?application_name=taskmgr&host=a:5432&host=b:5433",
        ),
        # a sync URL is left alone, but for the name
        (f"postgresql+psycopg://{HOST}", f"postgresql+psycopg://{HOST}?application_name=taskmgr"),
        ("sqlite:///app.db", "sqlite:///app.db"),
    ],
)
def test_an_async_url_becomes_the_sync_drivers(given: str, expected: str) -> None:
    target = engine_url(given)
    assert target.url == sa.make_url(expected)
    assert target.connect_args == {}


def test_a_statement_cache_of_zero_turns_prepared_statements_off() -> None:
    # the setting of a host behind a transaction-mode pooler: psycopg must not prepare
    for option in ("prepared_statement_cache_size", "statement_cache_size"):
        url, connect_args = translated(f"postgresql+asyncpg://{HOST}?{option}=0")
        assert connect_args == {"prepare_threshold": None}
        assert option not in url
    url, connect_args = translated(f"postgresql+asyncpg://{HOST}?prepared_statement_cache_size=500")
    assert connect_args == {} and "cache" not in url  # client-side tuning only
    engine = create_engine(f"postgresql+asyncpg://{HOST}?statement_cache_size=0")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.dialect.create_connect_args(engine.url)[1]["dbname"] == "app"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"postgresql+asyncpg://{HOST}?server_settings=jit", "'server_settings'"),
        (f"postgresql+asyncpg://{HOST}?record_class=x", "'record_class'"),
        (f"postgresql+asyncpg://{HOST}?ssl=true", "'ssl' must be one of"),
        (f"postgresql+asyncpg://{HOST}?timeout=soon", "'timeout' must be a positive"),
        (f"postgresql+asyncpg://{HOST}?command_timeout=-1", "'command_timeout' must be"),
        (f"postgresql+asyncpg://{HOST}?direct_tls=maybe", "'direct_tls' must be"),
        (f"postgresql+asyncpg://{HOST}?statement_cache_size=-1", "'statement_cache_size'"),
        (f"postgresql+asyncpg://{HOST}?ssl=require&ssl=disable", "more than once"),
        ("mysql+aiomysql://u:pw@db.invalid/app", r"no sync driver for mysql\+aiomysql"),
    ],
)
def test_what_cannot_be_translated_is_refused_before_connecting(url: str, named: str) -> None:
    with pytest.raises(DatabaseURLError, match=named) as caught:
        SchedulerService(url)  # the constructor: nothing connected, nothing written
    assert caught.value.field == "database_url"
    assert "pw" not in str(caught.value)  # the URL is shown redacted
    with pytest.raises(DatabaseURLError):
        SQLAlchemyStorage(url)
    with pytest.raises(DatabaseURLError):
        create_engine(url)


def test_max_connections_is_an_argument_and_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SchedulerService("sqlite:///unused.db").storage.max_connections == 4  # type: ignore[attr-defined]
    monkeypatch.setenv("TASKMGR_MAX_CONNECTIONS", "2")
    assert TaskmgrSettings().max_connections == 2
    service = SchedulerService("sqlite:///unused.db")
    assert service.storage.max_connections == 2  # type: ignore[attr-defined]
    assert service.configuration["max_connections"] == 2
    service = SchedulerService("sqlite:///unused.db", max_connections=7)
    assert service.storage.max_connections == 7  # type: ignore[attr-defined]
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidInputError) as caught:
            SchedulerService("sqlite:///unused.db", max_connections=bad)  # type: ignore[arg-type]
        assert caught.value.field == "max_connections"
    with pytest.raises(InvalidInputError, match="its own max_connections"):
        SchedulerService(MemoryStorage(), max_connections=2)
    engine = sa.create_engine("sqlite:///unused.db")
    try:
        with pytest.raises(InvalidInputError, match="used as it is"):
            SQLAlchemyStorage(engine=engine, max_connections=2)
        # a sync engine is the host's: its own pool, not sized by the setting
        assert SchedulerService(engine).storage.max_connections is None  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_the_pool_holds_at_most_its_size_and_closes_idle_connections(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'pool.db'}", pool_size=3, pool_timeout=0.1, idle_timeout=0.2
    )
    try:
        pool = engine.pool
        assert isinstance(pool, TrimmingPool)
        held = [engine.connect() for _ in range(3)]
        with pytest.raises(sa.exc.TimeoutError):  # a fourth waits for one, then gives up
            engine.connect()
        for conn in held:
            conn.close()
        assert pool.checkedin() == 3
        deadline = time.monotonic() + 5
        while pool.checkedin() > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pool.checkedin() == 1  # idle ones closed, down to one, with no traffic
        held = [engine.connect() for _ in range(3)]  # and opened again when needed
        for conn in held:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
            conn.close()
    finally:
        engine.dispose()


def test_an_asyncpg_url_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_psycopg(name: str, package: str | None = None) -> object:
        return None if name == "psycopg" else find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_psycopg)
    with pytest.raises(ImportError, match=r"pip install 'taskmgr\[postgres\]'"):
        engine_url(f"postgresql+asyncpg://{HOST}")
