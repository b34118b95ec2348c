"""Celery (Redis broker) beside taskmgr in the tasks scenario, and the module its
worker imports (``celery -A benchmarks.peers_celery:app worker``).

- single: ``apply_async()`` (``delay()`` with a queue) calls per second, one thread,
  one broker connection, to a queue no worker consumes (publish only);
- executed: one real ``celery worker --pool solo`` process (started and stopped
  here) runs the trivial task (records when it started, returns its argument; no
  result backend); from the first publish until the last task ended, as the
  worker's ``task_postrun`` signal records it;
- start latency: from ``apply_async()`` returning to the task's first line on the
  idle worker, sequential samples.

Each run uses a queue of its own on Redis database 14 and deletes its keys afterwards.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, worker_ready

from benchmarks._common import redis_url
from benchmarks._peers import WARMUP, latency_figures
from celery import Celery

NOTE = (
    "single: publish only; one `celery worker --pool solo` process; "
    "no result backend, no history row, no dedupe, not transactional"
)
_BROKER_ENV = "TASKMGR_BENCH_PEER_BROKER"
_QUEUE_ENV = "TASKMGR_BENCH_PEER_QUEUE"


def _broker() -> str:
    return redis_url().rsplit("/", 1)[0] + "/14"


app = Celery(
    "taskmgr_bench_peer", broker=os.environ.get(_BROKER_ENV) or _broker(), set_as_current=False
)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=4,
)
#: In the worker: when each trivial task started (by its argument) and ended.
STARTS: dict[str, float] = {}
ENDS: list[float] = []


@app.task(name="bench.peer_trivial")  # type: ignore[untyped-decorator]
def trivial(n: int | str) -> int | str:
    """The benchmark's task: records when it started, does nothing."""
    STARTS[str(n)] = time.time()
    return n


@app.task(name="bench.peer_report")  # type: ignore[untyped-decorator]
def report(key: str) -> None:
    """Hands the worker's records to the benchmark (runs after the tasks before it)."""
    summary = {"ended": len(ENDS), "last": max(ENDS, default=0.0)}
    _redis().rpush(key, json.dumps(summary))


def _ended(sender: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) != "bench.peer_trivial":
        return
    ENDS.append(time.time())
    n = str((kwargs or {}).get("n", ""))
    if n.startswith("latency-"):
        _redis().rpush(_key("latency"), f"{n} {STARTS[n]}")


def _ready(**_: Any) -> None:
    _redis().rpush(_key("ready"), "1")


if _QUEUE_ENV in os.environ:  # in the benchmark's worker only
    task_postrun.connect(_ended, weak=False)
    worker_ready.connect(_ready, weak=False)

_client: list[Any] = []


def _redis() -> Any:
    if not _client:
        import redis

        _client.append(redis.Redis.from_url(app.conf.broker_url))
    return _client[0]


def _key(name: str) -> str:
    return f"{os.environ.get(_QUEUE_ENV, '')}:{name}"


def run(single: int, bulk: int, executed: int, samples: int) -> dict[str, Any]:
    """Publish rate, then one worker's executed/s and start latency (no bulk figure)."""
    del bulk  # Celery has no bulk publish of independent tasks
    return _figures(single, executed, samples)


def _figures(single: int, executed: int, samples: int) -> dict[str, Any]:
    from benchmarks.celery_dispatch import ROOT, _worker

    queue = f"bench-peer-{uuid.uuid4().hex[:8]}"
    client = _redis()
    figures: dict[str, Any] = {}
    try:
        with app.connection_for_write() as conn:
            for n in range(WARMUP):
                trivial.apply_async(kwargs={"n": n}, queue=f"{queue}-idle", connection=conn)
            began = time.perf_counter()
            for n in range(single):
                trivial.apply_async(kwargs={"n": n}, queue=f"{queue}-idle", connection=conn)
            figures["single defers/s"] = round(single / (time.perf_counter() - began))
            conn.default_channel.queue_delete(f"{queue}-idle")

        env = {
            **os.environ,
            _BROKER_ENV: app.conf.broker_url,
            _QUEUE_ENV: queue,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        log = Path(tempfile.gettempdir()) / f"taskmgr-bench-{queue}.log"
        with _worker(env, queue, log, app="benchmarks.peers_celery:app") as proc:
            if client.blpop(f"{queue}:ready", timeout=30) is None or proc.poll() is not None:
                raise RuntimeError(f"celery worker did not start; see {log}")
            with app.connection_for_write() as conn:
                for n in range(WARMUP):
                    trivial.apply_async(kwargs={"n": n}, queue=queue, connection=conn)
                _summary(queue, conn)

                began_wall = time.time()
                for n in range(executed):
                    trivial.apply_async(kwargs={"n": n}, queue=queue, connection=conn)
                summary = _summary(queue, conn)
                if summary["ended"] < WARMUP + executed:
                    raise RuntimeError(f"celery worker ended {summary['ended']} tasks; see {log}")
                figures["executed/s"] = round(executed / (summary["last"] - began_wall))

                latencies = []
                for n in range(samples):
                    trivial.apply_async(kwargs={"n": f"latency-{n}"}, queue=queue, connection=conn)
                    published = time.time()
                    reply = client.blpop(f"{queue}:latency", timeout=30)
                    if reply is None:
                        raise TimeoutError(f"no start reported within 30 s; see {log}")
                    latencies.append(float(reply[1].split()[1]) - published)
                figures.update(latency_figures(latencies))
        log.unlink(missing_ok=True)  # kept only when something went wrong
    finally:
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
    return figures


def _summary(queue: str, conn: Any) -> dict[str, float]:
    """Ask the worker what it has ended so far (its report runs after the tasks)."""
    report.apply_async(args=(f"{queue}:report",), queue=queue, connection=conn)
    reply = _redis().blpop(f"{queue}:report", timeout=120)
    if reply is None:
        raise TimeoutError("the celery worker did not report within 120 s")
    summary: dict[str, float] = json.loads(reply[1])
    return summary
