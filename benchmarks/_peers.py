"""What the peers of the tasks scenario share: sizes, connection strings, waiting
for their runs to end, and the row of a peer that could not run."""

from __future__ import annotations

import asyncio
import importlib
import statistics
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa

from benchmarks._common import Database, Result, percentile

SCENARIO = "tasks"
CASE = "one process"
#: Runs deferred (and, for the workers, executed) before anything is timed.
WARMUP = 20
#: Runs per bulk defer.
BATCH = 1000
#: The optional extra that installs the PostgreSQL peers.
EXTRA = "pip install -e '.[bench]'"
FIGURES = ("single defers/s", "bulk defers/s", "executed/s", "start p50 ms", "start p99 ms")


def importable(*modules: str) -> bool:
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def skipped(variant: str, reason: str) -> Result:
    """The row of a peer that did not run: no figures, the reason in its note."""
    print(f"{variant} skipped: {reason}", flush=True)
    return Result(SCENARIO, variant, {}, case=CASE, note=f"skipped: {reason}")


def libpq_url(db: Database, *, search_path: bool = True) -> str:
    """The database's URL as libpq takes it, by default with its schema as search path."""
    url = sa.make_url(db.url).set(drivername="postgresql")
    if search_path and db.schema is not None:
        url = url.update_query_dict({"options": f"-csearch_path={db.schema}"})
    return url.render_as_string(hide_password=False)


async def wait_count(fetch: Callable[[], Awaitable[int]], count: int, step: float = 0.02) -> None:
    """Poll ``fetch()`` until it returns at least ``count`` (within 120 s): how a
    peer's ended runs, as recorded in its tables, are waited for."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if await fetch() >= count:
            return
        await asyncio.sleep(step)
    raise TimeoutError(f"{count} runs did not end within 120 s")


def rate(count: int, began: float) -> int:
    return round(count / (time.perf_counter() - began))


def latency_figures(latencies: list[float]) -> dict[str, float]:
    """Start p50 / p99 (ms) of sequential defer-to-start samples (in seconds)."""
    ms = [x * 1000 for x in latencies]
    return {
        "start p50 ms": round(statistics.median(ms), 2) if ms else 0.0,
        "start p99 ms": round(percentile(ms, 99) or 0.0, 2),
    }
