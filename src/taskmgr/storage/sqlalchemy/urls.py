"""The URL taskmgr's own engine connects with, from the URL (or engine) the host has.

taskmgr's storage runs on its own threads (the scheduler loop, the heartbeat, the
reaper, the outcome writer, the ``LISTEN`` connection), so its engine is synchronous.
Given a host's asyncio URL, it connects to the same database with the same
credentials through the sync driver of that database: ``postgresql+asyncpg`` and
``postgresql+psycopg_async`` become ``postgresql+psycopg``, ``sqlite+aiosqlite``
becomes ``sqlite+pysqlite``. Driving asyncpg from those threads would need an event
loop per thread (or one loop thread every operation hops through) and SQLAlchemy's
greenlet bridge on every statement, for the same SQL on the same server.

asyncpg's connection options differ from libpq's: those with an equivalent are
translated (``ssl=require`` is ``sslmode=require``, ``timeout=10`` is
``connect_timeout=10``, ...), its statement-cache sizes only tune the client (a cache
size of 0, the setting for a transaction-mode pooler, turns psycopg's prepared
statements off), libpq's own keywords pass as they are, and anything else is refused
with :class:`~taskmgr.exceptions.DatabaseURLError` before anything connects.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from taskmgr.exceptions import DatabaseURLError
from taskmgr.settings import redact_url

__all__ = ["APPLICATION_NAME", "EngineURL", "engine_url", "url_of"]

#: The ``application_name`` of taskmgr's PostgreSQL connections unless the URL sets
#: one: operators find them in ``pg_stat_activity``.
APPLICATION_NAME = "taskmgr"

#: async driver -> the sync driver of the same database
_SYNC_DRIVER = {
    ("postgresql", "asyncpg"): "psycopg",
    ("postgresql", "psycopg_async"): "psycopg",
    ("sqlite", "aiosqlite"): "pysqlite",
}

#: asyncpg ``connect()`` arguments that libpq spells the same way.
_ASYNCPG_SAME = frozenset(
    {"host", "port", "user", "password", "passfile", "service", "target_session_attrs"}
    | {"krbsrvname", "gsslib"}
)
#: asyncpg's client-side statement caches: nothing to translate but whether to prepare.
_ASYNCPG_CACHES = frozenset(
    {
        "statement_cache_size",
        "prepared_statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
    }
)
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class EngineURL:
    """What taskmgr's engine is created from: a sync URL and driver arguments."""

    url: sa.URL
    connect_args: dict[str, Any] = field(default_factory=dict)


def url_of(engine: object) -> sa.URL:
    """The URL of a host's ``AsyncEngine`` (credentials included): taskmgr connects
    with its own engine, never the host's pool (which belongs to the host's loop)."""
    sync_engine = getattr(engine, "sync_engine", None)
    if not isinstance(sync_engine, sa.Engine):
        raise TypeError(f"expected a SQLAlchemy AsyncEngine, got {type(engine).__name__}")
    return sync_engine.url


def engine_url(url: str | sa.URL) -> EngineURL:
    """The URL taskmgr's sync engine uses for ``url`` (an async driver's URL becomes
    the sync driver's, its options translated), named ``taskmgr`` on PostgreSQL
    unless it names itself.

    :raises sqlalchemy.exc.ArgumentError: ``url`` does not parse.
    :raises DatabaseURLError: an async driver taskmgr has no sync driver for, or an
        option of it with no equivalent.
    :raises ImportError: the sync driver (psycopg for PostgreSQL) is not installed.
    """
    parsed = sa.make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    connect_args: dict[str, Any] = {}
    target = _SYNC_DRIVER.get((backend, driver))
    if target is None and _is_async(parsed):
        raise DatabaseURLError(
            f"{redact_url(parsed)}: taskmgr has no sync driver for {backend}+{driver}; "
            "taskmgr runs on PostgreSQL (asyncpg, psycopg) and SQLite (aiosqlite, pysqlite)"
        )
    if target is not None:
        if target == "psycopg" and importlib.util.find_spec("psycopg") is None:
            raise ImportError(
                f"taskmgr's own threads connect to PostgreSQL with psycopg (the sync driver "
                f"for {backend}+{driver}): pip install 'taskmgr[postgres]'"
            )
        if driver == "asyncpg":
            query, connect_args = _from_asyncpg(parsed)
            parsed = parsed.set(query=query)
        parsed = parsed.set(drivername=f"{backend}+{target}")
    named = {"application_name", "fallback_application_name"} & set(parsed.query)
    if backend == "postgresql" and not named:
        parsed = parsed.update_query_dict({"application_name": APPLICATION_NAME})
    return EngineURL(parsed, connect_args)


def _is_async(url: sa.URL) -> bool:
    try:
        dialect = url.get_dialect()
    except sa.exc.NoSuchModuleError:
        return False  # reported by create_engine, as for any unknown dialect
    return bool(getattr(dialect, "is_async", False))


def _from_asyncpg(url: sa.URL) -> tuple[dict[str, str | tuple[str, ...]], dict[str, Any]]:
    """libpq's query options for asyncpg's (the query of a ``postgresql+psycopg``
    URL), and psycopg's connection arguments."""
    query: dict[str, str | tuple[str, ...]] = {}
    connect_args: dict[str, Any] = {}
    server_options: list[str] = []  # libpq's ``options``, after the URL's own
    known = _libpq_keywords()

    def refuse(name: str, why: str) -> DatabaseURLError:
        return DatabaseURLError(
            f"{redact_url(url)}: asyncpg option {name!r} {why}; taskmgr connects with "
            "psycopg (libpq) from its own threads: remove it or give taskmgr a "
            "postgresql+psycopg URL of its own"
        )

    for name, value in url.query.items():
        if name in ("host", "port"):  # several hosts: SQLAlchemy reads them alike
            query[name] = value
            continue
        if not isinstance(value, str):
            raise refuse(name, "is given more than once")
        if name in _ASYNCPG_SAME or name in known:
            query[name] = value
        elif name == "database":
            query["dbname"] = value
        elif name == "ssl":
            mode = value.replace("_", "-")
            if mode not in _SSL_MODES:
                raise refuse(name, f"must be one of {', '.join(_SSL_MODES)}, got {value!r}")
            query["sslmode"] = mode
        elif name == "direct_tls":
            flag = value.lower()
            if flag not in _TRUE | _FALSE:
                raise refuse(name, f"must be true or false, got {value!r}")
            if flag in _TRUE:
                query["sslnegotiation"] = "direct"  # libpq 17 and later
        elif name == "timeout":
            query["connect_timeout"] = str(max(1, math.ceil(_seconds(name, value, refuse))))
        elif name == "command_timeout":
            milliseconds = max(1, math.ceil(_seconds(name, value, refuse) * 1000))
            server_options.append(f"-c statement_timeout={milliseconds}")
        elif name in _ASYNCPG_CACHES:
            count = _count(name, value, refuse)
            if count == 0 and name in ("statement_cache_size", "prepared_statement_cache_size"):
                connect_args["prepare_threshold"] = None  # never prepare (poolers)
        else:
            raise refuse(name, "has no libpq equivalent")
    if server_options:
        given = query.get("options")
        query["options"] = " ".join(
            [given, *server_options] if isinstance(given, str) else server_options
        )
    return query, connect_args


def _seconds(name: str, value: str, refuse: Any) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise refuse(name, f"must be a positive number of seconds, got {value!r}")
    return seconds


def _count(name: str, value: str, refuse: Any) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise refuse(name, f"must be an integer >= 0, got {value!r}")
    return count


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    """The connection keywords of the libpq psycopg runs on (``PQconndefaults``)."""
    from psycopg import pq

    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())
