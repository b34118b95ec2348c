"""Background tasks: how fast runs are deferred, executed and started, one process.

taskmgr on SQLite and PostgreSQL (``defer``, ``defer_many``, one started instance
with in-process dispatch executing a trivial task), beside Celery's ``delay()``
publishing to Redis (publish only: its workers are measured in ``celery dispatch``).

- single: ``defer()`` calls per second, one thread, each its own transaction;
- bulk: runs per second written by ``defer_many()`` in batches of 1,000;
- executed: trivial runs deferred in bulk to an idle started instance, per second
  from the first defer until the last one ended;
- start latency: from ``defer()`` returning to the task's first line, on an idle
  instance (p50 / p99 over sequential samples).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from benchmarks._common import (
    Result,
    percentile,
    redis_available,
    redis_url,
    temp_database,
)

SCENARIO = "tasks"
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
            started = time.perf_counter()
            for first in range(0, executed, 1000):
                batch = [{"n": n} for n in range(first, min(executed, first + 1000))]
                service.defer_many("bench.trivial", batch)
            _wait_ended(service, executed, timeout=120)
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
    return Result(SCENARIO, f"taskmgr {kind}", figures, case="one process")


def run_celery(single: int) -> Result:
    from celery import Celery

    app = Celery("bench_tasks", broker=redis_url(), backend=None)
    app.conf.task_ignore_result = True

    @app.task(name="bench.trivial")  # type: ignore[untyped-decorator]
    def celery_trivial(n: int) -> int:
        return n

    queue = f"bench-tasks-{time.time_ns()}"
    with app.connection_for_write() as conn:
        started = time.perf_counter()
        for n in range(single):
            celery_trivial.apply_async(kwargs={"n": n}, queue=queue, connection=conn)
        rate = round(single / (time.perf_counter() - started))
        conn.default_channel.queue_delete(queue)
    return Result(
        SCENARIO,
        "Celery delay() (Redis)",
        {"single defers/s": rate},
        case="one process",
        note="publish only: no history row, no dedupe, not transactional",
    )


def run(single: int, bulk: int, executed: int, samples: int, kinds: list[str]) -> list[Result]:
    results = [run_taskmgr(kind, single, bulk, executed, samples) for kind in kinds]
    if redis_available():
        results.append(run_celery(single))
    return results
