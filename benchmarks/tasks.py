"""Background tasks: how fast runs are deferred, executed and started, one process.

taskmgr on SQLite and PostgreSQL (``defer``, ``defer_many``, one started instance
with in-process dispatch executing a trivial task), beside its peers with the same
sizes and trivial task: procrastinate and pgqueuer on PostgreSQL
(``peers_procrastinate``, ``peers_pgqueuer``; the ``bench`` extra installs them) and
Celery over Redis (``peers_celery``: ``delay()`` publish rate, one real worker).
A peer that is not installed, or whose server does not answer, gets a row saying so.

- single: ``defer()`` calls per second, one thread, each its own transaction;
- bulk: runs per second written by ``defer_many()`` in batches of 1,000;
- executed: trivial runs deferred in bulk to an idle started instance, per second
  from the first defer until the last one ended;
- start latency: from ``defer()`` returning to the task's first line, on an idle
  instance (p50 / p99 over sequential samples);
- event-loop lag (taskmgr, ``loop_lag``): p99 and max lag of an asyncio loop whose
  coroutines defer as many runs as ``single``, 200 per second, through
  ``AsyncSchedulerService``.

Every variant first defers (and runs) a few warm-up runs that are not timed.
"""

from __future__ import annotations

import importlib
import statistics
import threading
import time
from typing import Any

from benchmarks import loop_lag
from benchmarks._common import (
    Result,
    percentile,
    postgres_available,
    redis_available,
    temp_database,
)
from benchmarks._peers import CASE, EXTRA, WARMUP, importable, skipped

SCENARIO = "tasks"
#: peer: its row, the modules it needs, the server it needs, what installs them
_PEERS = {
    "procrastinate": (
        "procrastinate postgres",
        ("procrastinate", "psycopg_pool"),
        "PostgreSQL",
        EXTRA,
    ),
    "pgqueuer": ("pgqueuer postgres", ("pgqueuer", "asyncpg"), "PostgreSQL", EXTRA),
    "celery": ("Celery (Redis)", ("celery", "redis"), "Redis", "pip install -e '.[celery]'"),
}
PEERS = tuple(_PEERS)
STARTS: dict[str, float] = {}
_STARTS_LOCK = threading.Lock()


def trivial(n: int) -> int:
    """The benchmark's task: records when it started, does nothing."""
    with _STARTS_LOCK:
        STARTS[str(n)] = time.perf_counter()
    return n


def _service(db: Any, *, background: bool) -> Any:
    from taskmgr import InlineDispatcher, SchedulerService

    service = SchedulerService(
        db.storage(),
        jobs=[trivial],
        background=background,
        poll_interval=0.5,
        dispatcher=InlineDispatcher(max_workers=8),
    )
    service.create_job("bench.trivial", trivial)
    return service


def _wait_ended(service: Any, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = service.storage.history_summary().counts
        ended = sum(n for (_, status), n in counts.items() if status.is_final)
        if ended >= count:
            return
        time.sleep(0.02)
    raise TimeoutError(f"{count} runs did not end within {timeout}s")


def run_taskmgr(kind: str, single: int, bulk: int, executed: int, samples: int) -> Result:
    figures: dict[str, Any] = {}
    with temp_database(kind) as db:
        writer = _service(db, background=False)
        try:
            for n in range(WARMUP):
                writer.defer("bench.trivial", n=n)
            started = time.perf_counter()
            for n in range(single):
                writer.defer("bench.trivial", n=n)
            figures["single defers/s"] = round(single / (time.perf_counter() - started))
            started = time.perf_counter()
            for first in range(0, bulk, 1000):
                batch = [{"n": n} for n in range(first, min(bulk, first + 1000))]
                writer.defer_many("bench.trivial", batch)
            figures["bulk defers/s"] = round(bulk / (time.perf_counter() - started))
        finally:
            writer.close()

    with temp_database(kind) as db:
        service = _service(db, background=True)
        service.start()
        try:
            service.defer_many("bench.trivial", [{"n": n} for n in range(WARMUP)])
            _wait_ended(service, WARMUP, timeout=120)
            started = time.perf_counter()
            for first in range(0, executed, 1000):
                batch = [{"n": n} for n in range(first, min(executed, first + 1000))]
                service.defer_many("bench.trivial", batch)
            _wait_ended(service, WARMUP + executed, timeout=120)
            figures["executed/s"] = round(executed / (time.perf_counter() - started))

            latencies = []
            for n in range(samples):
                key = f"latency-{n}"
                execution = service.defer("bench.trivial", n=key)
                deferred = time.perf_counter()
                service.wait(execution.id, timeout=30)
                with _STARTS_LOCK:
                    latencies.append((STARTS[key] - deferred) * 1000)
            figures["start p50 ms"] = round(statistics.median(latencies), 2)
            figures["start p99 ms"] = round(percentile(latencies, 99) or 0.0, 2)
        finally:
            service.close()
    return Result(SCENARIO, f"taskmgr {kind}", figures, case=CASE)


def run(
    single: int,
    bulk: int,
    executed: int,
    samples: int,
    kinds: list[str],
    peers: tuple[str, ...] = PEERS,
) -> list[Result]:
    results = [run_taskmgr(kind, single, bulk, executed, samples) for kind in kinds]
    results.extend(run_peer(peer, single, bulk, executed, samples) for peer in peers)
    results.extend(loop_lag.run(single, kinds))  # taskmgr only: its awaitable API
    return results


def run_peer(peer: str, single: int, bulk: int, executed: int, samples: int) -> Result:
    """A peer's row (``benchmarks/peers_<peer>.py``), or a row saying why it was skipped."""
    variant, modules, server, extra = _PEERS[peer]
    if not importable(*modules):
        return skipped(variant, f"{peer} not installed ({extra})")
    if not (postgres_available() if server == "PostgreSQL" else redis_available()):
        return skipped(variant, f"{server} not reachable")
    module = importlib.import_module(f"benchmarks.peers_{peer}")
    figures = module.run(single, bulk, executed, samples)
    return Result(SCENARIO, variant, figures, case=CASE, note=module.NOTE)
