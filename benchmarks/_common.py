"""Shared helpers: result rows, percentiles, databases, bulk job setup."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

__all__ = [
    "Database",
    "Lateness",
    "Result",
    "cpu_seconds",
    "insert_interval_jobs",
    "percentile",
    "postgres_url",
    "rss_mb",
    "temp_database",
]

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def postgres_url() -> str:
    return os.environ.get("TASKMGR_TEST_POSTGRES_URL") or DEFAULT_POSTGRES


def redis_url() -> str:
    return os.environ.get("TASKMGR_TEST_REDIS_URL") or DEFAULT_REDIS


@dataclass
class Result:
    """One line of the table: a scenario, a variant (taskmgr or a baseline), figures."""

    scenario: str
    variant: str
    figures: dict[str, Any] = field(default_factory=dict)
    #: Which variant of the same scenario/case the ratios compare against.
    baseline_of: str | None = None
    case: str = ""
    note: str = ""


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def cpu_seconds() -> float:
    """CPU time of this process (all threads)."""
    return time.process_time()


def rss_mb() -> float:
    """Peak resident memory of this process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Lateness:
    """Thread-safe record of (scheduled, started) pairs, in seconds since the epoch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.samples: list[tuple[float, float]] = []

    def add(self, scheduled: float, started: float) -> None:
        with self._lock:
            self.samples.append((scheduled, started))

    def window(self, start: float, end: float) -> list[float]:
        """Lateness (s) of the fires scheduled in ``[start, end)``."""
        with self._lock:
            return [b - a for a, b in self.samples if start <= a < end]


@dataclass
class Database:
    url: str
    schema: str | None
    kind: str  # "sqlite" | "postgres"

    def storage(self) -> SQLAlchemyStorage:
        return SQLAlchemyStorage(self.url, schema=self.schema)

    def engine(self) -> sa.Engine:
        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        if self.schema is not None:
            schema = self.schema

            @sa.event.listens_for(engine, "connect")
            def _path(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute(f'SET search_path TO "{schema}"')
                cursor.close()

        return engine


@contextlib.contextmanager
def temp_database(kind: str) -> Iterator[Database]:
    """A fresh, empty database (SQLite file in a temp dir, or a PostgreSQL schema)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskmgr-bench-") as tmp:
            yield Database(f"sqlite:///{tmp}/bench.db", None, "sqlite")
        return
    url = postgres_url()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield Database(url, schema, "postgres")
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(postgres_url(), poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return True
    except Exception:
        return False


def redis_available() -> bool:
    try:
        import redis

        client = redis.Redis.from_url(redis_url(), socket_connect_timeout=1)
        ok = bool(client.ping())
        client.close()
        return ok
    except Exception:
        return False


def insert_interval_jobs(
    storage: SQLAlchemyStorage,
    func: str,
    count: int,
    *,
    due: int | None = None,
    first_at: datetime,
    chunk: int = 5000,
    idle_every: int = 86400,
    grace: float | None = None,
) -> None:
    """Insert ``count`` jobs in bulk: the first ``due`` (default all) every second,
    their slots spread evenly over the second from ``first_at``; the others every
    ``idle_every`` seconds (default a day), first due one such period later
    (registered, not due during the run). ``grace``: their misfire grace time."""
    due = count if due is None else due
    table = storage.tables.jobs
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "func": func,
        "names": {},
        "description": None,
        "kwargs": {},
        "max_instances": 1,
        "overlap_policy": "skip",
        "misfire_grace_time": grace,
        "coalesce": True,
        "max_retries": 0,
        "retry_backoff_base": 1.0,
        "retry_backoff_max": 60.0,
        "retry_jitter": 0.0,
        "timeout": None,
        "queue": None,
        "state": "active",
        "source": "api",
        "fingerprint": None,
        "last_run_at": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    rows: list[dict[str, Any]] = []
    with storage.engine.begin() as conn:
        for i in range(count):
            if i < due:
                start = first_at + timedelta(seconds=i / max(due, 1))
                every = 1
            else:
                start = first_at + timedelta(seconds=idle_every + i % idle_every)
                every = idle_every
            rows.append(
                {
                    **base,
                    "job_key": f"bench.{i:07d}",
                    "trigger": {"type": "interval", "every": every, "start": _iso(start)},
                    "next_run_at": start,
                }
            )
            if len(rows) >= chunk:
                conn.execute(sa.insert(table), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(table), rows)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wait_until(deadline: float, step: float = 0.05, stop: Callable[[], bool] | None = None) -> None:
    while time.time() < deadline:
        if stop is not None and stop():
            return
        time.sleep(min(step, max(0.0, deadline - time.time())))


def rss_now_mb() -> float:
    """Current resident memory of this process, in MB (Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return rss_mb()
