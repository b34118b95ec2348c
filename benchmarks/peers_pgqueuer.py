"""pgqueuer (PostgreSQL, asyncpg driver) beside taskmgr in the tasks scenario.

The same figures, sizes and trivial task (records when it started, returns its
argument; the entrypoint decodes the job's JSON payload and calls it), one process,
each phase in a schema of its own (dropped afterwards), one connection for
enqueueing and one for the consumer:

- single: ``Queries.enqueue()`` of one job at a time, each its own transaction;
- bulk: ``Queries.enqueue()`` with lists of 1,000 jobs;
- executed: one ``QueueManager`` (its defaults: batches of 10, no concurrency cap,
  LISTEN/NOTIFY) in this process's event loop; from the first enqueue until the last
  job is logged as successful;
- start latency: from ``enqueue()`` returning to the task's first line on the idle
  consumer, sequential samples, each waited for until logged as successful.

asyncpg, not psycopg: pgqueuer's ``PsycopgDriver`` listens with psycopg's
``notifies(timeout=1.0)``, which holds the connection's lock while it waits, so each
query of a consumer on that driver can wait up to a second (measured here: ~2 s from
enqueue to start, ~150 executed/s).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from benchmarks._common import Database, temp_database
from benchmarks._peers import BATCH, WARMUP, latency_figures, libpq_url, rate, wait_count

ENTRYPOINT = "bench_trivial"
NOTE = "consumer: batches of 10, LISTEN/NOTIFY"
_SUCCESSFUL = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"


def run(single: int, bulk: int, executed: int, samples: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with temp_database("postgres") as db:
        figures.update(asyncio.run(_enqueues(_dsn(db), db.schema, single, bulk)))
    with temp_database("postgres") as db:
        figures.update(asyncio.run(_consumer(_dsn(db), db.schema, executed, samples)))
    return figures


def _dsn(db: Database) -> str:
    return libpq_url(db, search_path=False)


async def _connect(dsn: str, schema: str | None) -> Any:
    import asyncpg

    settings = {"search_path": schema} if schema else {}
    return await asyncpg.connect(dsn, server_settings=settings)


def _payload(n: int | str) -> bytes:
    return json.dumps({"n": n}).encode()


async def _enqueues(dsn: str, schema: str | None, single: int, bulk: int) -> dict[str, Any]:
    from pgqueuer import AsyncpgDriver, Queries

    conn = await _connect(dsn, schema)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for n in range(WARMUP):
            await queries.enqueue(ENTRYPOINT, _payload(n))
        began = time.perf_counter()
        for n in range(single):
            await queries.enqueue(ENTRYPOINT, _payload(n))
        single_rate = rate(single, began)
        began = time.perf_counter()
        for first in range(0, bulk, BATCH):
            await _enqueue_many(queries, range(first, min(bulk, first + BATCH)))
        return {"single defers/s": single_rate, "bulk defers/s": rate(bulk, began)}
    finally:
        await conn.close()


async def _enqueue_many(queries: Any, numbers: range) -> None:
    await queries.enqueue(
        [ENTRYPOINT] * len(numbers), [_payload(n) for n in numbers], [0] * len(numbers)
    )


async def _consumer(dsn: str, schema: str | None, executed: int, samples: int) -> dict[str, Any]:
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    starts: dict[str, float] = {}

    def trivial(n: int | str) -> int | str:
        starts[str(n)] = time.perf_counter()
        return n

    async def entrypoint(job: Any) -> None:
        # pgqueuer keeps no return value: its entrypoints return None
        trivial(json.loads(job.payload)["n"])

    conn = await _connect(dsn, schema)
    consumer_conn = await _connect(dsn, schema)

    async def successful() -> int:
        return int(await conn.fetchval(_SUCCESSFUL))

    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        qm = QueueManager(Queries(AsyncpgDriver(consumer_conn)))
        qm.entrypoint(ENTRYPOINT, accepts_context=False)(entrypoint)
        consumer = asyncio.create_task(qm.run())
        try:
            for n in range(WARMUP):
                await queries.enqueue(ENTRYPOINT, _payload(n))
            await wait_count(successful, WARMUP)

            began = time.perf_counter()
            for first in range(0, executed, BATCH):
                await _enqueue_many(queries, range(first, min(executed, first + BATCH)))
            await wait_count(successful, WARMUP + executed)
            figures: dict[str, Any] = {"executed/s": rate(executed, began)}

            latencies = []
            for n in range(samples):
                key = f"latency-{n}"
                await queries.enqueue(ENTRYPOINT, _payload(key))
                enqueued = time.perf_counter()
                await wait_count(successful, WARMUP + executed + n + 1, step=0.005)
                latencies.append(starts[key] - enqueued)
            figures.update(latency_figures(latencies))
            return figures
        finally:
            qm.shutdown.set()
            await consumer
    finally:
        await consumer_conn.close()
        await conn.close()
