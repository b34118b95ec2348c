"""Celery dispatch: N executions end to end through one Celery worker (Redis broker),
taskmgr's ``CeleryDispatcher`` against raw ``task.delay()`` of the same no-op task.

taskmgr: N interval jobs all due at the same instant T; the scheduler claims them and
publishes one message each; the worker takes each over and records its outcome in the
database. Throughput = N / (last completion - T); latency = worker start - T.
Raw: at T one thread calls ``delay()`` N times; the task records its start time.
Same worker, same broker, same queue length; once with a ``--pool solo`` worker (one
execution at a time) and once with ``--pool threads --concurrency 8``.

Start latency, idle: one slot at a time (100 ms apart) on an idle solo worker, slot to
start; raw: one ``delay()`` at a time, call to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks._common import (
    Database,
    Result,
    insert_interval_jobs,
    percentile,
    redis_url,
    temp_database,
)

SCENARIO = "celery dispatch"
ROOT = Path(__file__).resolve().parents[1]


def _broker() -> str:
    # a database number of its own, emptied before and after
    return redis_url().rsplit("/", 1)[0] + "/14"


#: The worker pools compared: (pool, concurrency).
POOLS = (("solo", 1), ("threads", 8))


@contextlib.contextmanager
def _worker(
    env: dict[str, str],
    queue: str,
    log: Path,
    app: str = "benchmarks.celery_host:app",
    pool: tuple[str, int] = ("solo", 1),
) -> Iterator[subprocess.Popen[bytes]]:
    args = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool", pool[0], "--concurrency", str(pool[1]),
        "--queues", queue, "--hostname", f"bench-{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait(check: Any, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def run(
    count: int,
    kind: str = "postgres",
    samples: int = 50,
    pools: tuple[tuple[str, int], ...] = POOLS,
) -> list[Result]:
    import redis

    broker = _broker()
    client = redis.Redis.from_url(broker)
    client.flushdb()
    results: list[Result] = []
    with temp_database(kind) as db:
        url = _url_with_schema(db)
        try:
            for pool in pools:
                case = f"{count} runs, {_pool_name(pool)}"
                with _started(broker, url, pool) as (app, service, queue):
                    results.append(_raw(app, client, queue, count, case))
                    results.append(_taskmgr(service, count, case))
            if samples:
                case = "start latency, idle solo worker"
                with _started(broker, url, ("solo", 1)) as (app, service, queue):
                    results.append(_raw_latency(app, client, queue, samples, case))
                    results.append(_taskmgr_latency(service, samples, case))
        finally:
            client.flushdb()
            client.close()
    return results


def _pool_name(pool: tuple[str, int]) -> str:
    return "solo worker" if pool[0] == "solo" else f"{pool[0]} worker ({pool[1]})"


@contextlib.contextmanager
def _started(broker: str, url: str, pool: tuple[str, int]) -> Iterator[tuple[Any, Any, str]]:
    """A worker of ``pool`` on a queue of its own, ready; and the app and service that
    publish to it."""
    from benchmarks import celery_host

    queue = f"bench-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "TASKMGR_BENCH_BROKER": broker,
        "TASKMGR_BENCH_DATABASE": url,
        "TASKMGR_BENCH_QUEUE": queue,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    app, service = celery_host.build(broker, url, queue)
    log = Path(tempfile.gettempdir()) / f"taskmgr-bench-{queue}.log"
    with _worker(env, queue, log, pool=pool) as proc, contextlib.closing(service.storage):
        service.storage.open()
        _clear(service.storage)
        ready = _wait(
            lambda: (
                proc.poll() is not None
                or any(
                    i.mode == "worker" and i.status.value == "running"
                    for i in service.list_instances()
                )
            ),
            30,
        )
        if not ready or proc.poll() is not None:
            raise RuntimeError(f"celery worker did not start; see {log}")
        time.sleep(1.0)  # its consumer starts right after it registers
        yield app, service, queue


def _clear(storage: Any) -> None:
    """Forget the jobs and runs of an earlier case (the database is the run's own)."""
    with storage.engine.begin() as conn:
        conn.execute(sa.delete(storage.tables.executions))
        conn.execute(sa.delete(storage.tables.jobs))


def _url_with_schema(db: Database) -> str:
    if db.schema is None:
        return db.url
    # libpq option: search_path for the worker's connections
    sep = "&" if "?" in db.url else "?"
    return f"{db.url}{sep}options=-csearch_path%3D{db.schema}"


def _raw(app: Any, client: Any, queue: str, count: int, case: str) -> Result:
    task = app.tasks["bench.raw_noop"]
    client.delete(f"{queue}:done")
    began = time.time()
    for _ in range(count):
        task.delay(time.time())
    sent = time.time() - began
    _wait(lambda: client.llen(f"{queue}:done") >= count, 120)
    pairs = [tuple(map(float, x.split())) for x in client.lrange(f"{queue}:done", 0, -1)]
    last = max((b for _, b in pairs), default=began)
    latency = [(b - a) * 1000 for a, b in pairs]
    return Result(
        SCENARIO,
        "raw delay()",
        {
            "executions/s": round(len(pairs) / max(last - began, 1e-9), 1),
            "publish/s": round(count / sent, 1),
            "p50 ms": _r(percentile(latency, 50)),
            "p99 ms": _r(percentile(latency, 99)),
            "done": len(pairs),
        },
        case=case,
        note="latency from each delay() call",
    )


def _taskmgr(service: Any, count: int, case: str) -> Result:
    storage = service.storage
    from benchmarks import celery_host

    name = service.registry.resolve(celery_host.noop)
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    # all due at the same instant: every job's slot is T (not spread)
    insert_interval_jobs(storage, name, count, due=count, first_at=first)
    with storage.engine.begin() as conn:
        jobs = storage.tables.jobs
        conn.execute(
            sa.update(jobs).values(
                next_run_at=first,
                trigger={"type": "interval", "every": 3600, "start": first.isoformat()},
            )
        )
    service.start()
    executions = storage.tables.executions
    c = executions.c
    try:

        def finished() -> bool:
            with storage.engine.connect() as conn:
                done = conn.execute(
                    sa.select(sa.func.count()).where(c.status == "success")
                ).scalar_one()
            return bool(done >= count)

        _wait(finished, 120 + first.timestamp() - time.time())
    finally:
        service.shutdown()
    storage.open()  # the service closed the storage it owns
    with storage.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.started_at, c.completed_at).where(c.status == "success")
        ).all()
    storage.close()
    t0 = first.timestamp()
    latency = [(row.started_at.timestamp() - t0) * 1000 for row in rows]
    last = max((row.completed_at.timestamp() for row in rows), default=t0)
    return Result(
        SCENARIO,
        "taskmgr CeleryDispatcher",
        {
            "executions/s": round(len(rows) / max(last - t0, 1e-9), 1),
            "publish/s": None,
            "p50 ms": _r(percentile(latency, 50)),
            "p99 ms": _r(percentile(latency, 99)),
            "done": len(rows),
        },
        case=case,
        note="latency from the slot",
    )


def _raw_latency(app: Any, client: Any, queue: str, samples: int, case: str) -> Result:
    task = app.tasks["bench.raw_noop"]
    key = f"{queue}:done"
    client.delete(key)
    latency = []
    for _ in range(samples):
        task.delay(time.time())
        reply = client.blpop(key, timeout=30)
        if reply is None:
            raise TimeoutError("the raw task did not start within 30 s")
        sent, started = map(float, reply[1].split())
        latency.append((started - sent) * 1000)
    return Result(
        SCENARIO,
        "raw delay()",
        {
            "executions/s": None,
            "publish/s": None,
            "p50 ms": _r(percentile(latency, 50)),
            "p99 ms": _r(percentile(latency, 99)),
            "done": len(latency),
        },
        case=case,
        note="one delay() at a time, latency from the call",
    )


def _taskmgr_latency(service: Any, samples: int, case: str, gap: float = 0.1) -> Result:
    """One slot every ``gap`` seconds (each its own job), started on an idle worker."""
    storage = service.storage
    from benchmarks import celery_host

    name = service.registry.resolve(celery_host.noop)
    first = datetime.now(UTC) + timedelta(seconds=2)
    insert_interval_jobs(storage, name, samples, due=0, first_at=first)
    jobs = storage.tables.jobs
    slots = {f"bench.{i:07d}": first + timedelta(seconds=i * gap) for i in range(samples)}
    with storage.engine.begin() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.job_key == sa.bindparam("b_key"))
            .values(next_run_at=sa.bindparam("b_at"), trigger=sa.bindparam("b_trigger")),
            [
                {
                    "b_key": key,
                    "b_at": at,
                    "b_trigger": {"type": "interval", "every": 3600, "start": at.isoformat()},
                }
                for key, at in slots.items()
            ],
        )
    service.start()
    c = storage.tables.executions.c
    try:

        def finished() -> bool:
            with storage.engine.connect() as conn:
                done = conn.execute(
                    sa.select(sa.func.count()).where(c.status == "success")
                ).scalar_one()
            return bool(done >= samples)

        _wait(finished, 60 + samples * gap)
    finally:
        service.shutdown()
    storage.open()
    with storage.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.scheduled_for, c.started_at).where(c.status == "success")
        ).all()
    storage.close()
    latency = [(row.started_at - row.scheduled_for).total_seconds() * 1000 for row in rows]
    return Result(
        SCENARIO,
        "taskmgr CeleryDispatcher",
        {
            "executions/s": None,
            "publish/s": None,
            "p50 ms": _r(percentile(latency, 50)),
            "p99 ms": _r(percentile(latency, 99)),
            "done": len(rows),
        },
        case=case,
        note=f"one slot every {int(gap * 1000)} ms, latency from the slot",
    )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
