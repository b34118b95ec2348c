"""procrastinate (PostgreSQL, psycopg 3 connector) beside taskmgr in the tasks scenario.

The same figures, sizes and trivial task (records when it started, returns its
argument), one process, each phase in a schema of its own (dropped afterwards):

- single: ``defer_async()`` one at a time, each its own transaction;
- bulk: ``batch_defer_async()`` in batches of 1,000;
- executed: one worker (``run_worker_async``, 8 concurrent jobs, LISTEN/NOTIFY) in
  this process's event loop; from the first defer until the last job is recorded
  as succeeded;
- start latency: from ``defer_async()`` returning to the task's first line on the
  idle worker, sequential samples, each waited for until recorded as succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from benchmarks._common import temp_database
from benchmarks._peers import BATCH, WARMUP, latency_figures, libpq_url, rate, wait_count

CONCURRENCY = 8
NOTE = f"worker: {CONCURRENCY} concurrent async jobs, LISTEN/NOTIFY"
_SUCCEEDED = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"


def run(single: int, bulk: int, executed: int, samples: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with temp_database("postgres") as db:
        figures.update(asyncio.run(_defers(libpq_url(db), single, bulk)))
    with temp_database("postgres") as db:
        figures.update(asyncio.run(_worker(libpq_url(db), executed, samples)))
    return figures


def _app(url: str) -> tuple[Any, Any, dict[str, float]]:
    """An app on ``url``, its trivial task on a queue of its own, the start times."""
    import procrastinate

    starts: dict[str, float] = {}

    async def trivial(n: int | str) -> int | str:
        starts[str(n)] = time.perf_counter()
        return n

    # max_size: the worker's 8 concurrent jobs each take a pooled connection
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, max_size=10))
    queue = f"bench_{uuid.uuid4().hex[:8]}"
    task = app.task(name="bench.trivial", queue=queue)(trivial)
    return app, task, starts


async def _defers(url: str, single: int, bulk: int) -> dict[str, Any]:
    app, task, _ = _app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for n in range(WARMUP):
            await task.defer_async(n=n)
        began = time.perf_counter()
        for n in range(single):
            await task.defer_async(n=n)
        single_rate = rate(single, began)
        began = time.perf_counter()
        for first in range(0, bulk, BATCH):
            await task.batch_defer_async(
                *({"n": n} for n in range(first, min(bulk, first + BATCH)))
            )
        return {"single defers/s": single_rate, "bulk defers/s": rate(bulk, began)}


async def _worker(url: str, executed: int, samples: int) -> dict[str, Any]:
    import psycopg

    app, task, starts = _app(url)
    async with (
        app.open_async(),
        await psycopg.AsyncConnection.connect(url, autocommit=True) as poll,
    ):

        async def succeeded() -> int:
            cursor = await poll.execute(_SUCCEEDED)
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[task.queue],
                concurrency=CONCURRENCY,
                install_signal_handlers=False,
                listen_notify=True,
            )
        )
        try:
            for n in range(WARMUP):
                await task.defer_async(n=n)
            await wait_count(succeeded, WARMUP)

            began = time.perf_counter()
            for first in range(0, executed, BATCH):
                batch = ({"n": n} for n in range(first, min(executed, first + BATCH)))
                await task.batch_defer_async(*batch)
            await wait_count(succeeded, WARMUP + executed)
            figures: dict[str, Any] = {"executed/s": rate(executed, began)}

            latencies = []
            for n in range(samples):
                key = f"latency-{n}"
                await task.defer_async(n=key)
                deferred = time.perf_counter()
                await wait_count(succeeded, WARMUP + executed + n + 1, step=0.005)
                latencies.append(starts[key] - deferred)
            figures.update(latency_figures(latencies))
            return figures
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
