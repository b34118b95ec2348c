"""The host module the Celery benchmark's worker imports
(``celery -A benchmarks.celery_host:app worker``): one Celery app with taskmgr's
dispatcher and a raw no-op task, configured from environment variables."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher


def noop() -> None:
    """The trivial job, run through taskmgr."""


def build(broker: str, database: str, queue: str) -> tuple[Celery, SchedulerService]:
    app = Celery("taskmgr_bench", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=4,
    )
    service = SchedulerService(
        database,
        jobs=[noop],
        dispatcher=CeleryDispatcher(app),
        poll_interval=0.2,
        heartbeat_interval=1.0,
        heartbeat_timeout=5.0,
    )

    @app.task(name="bench.raw_noop", shared=False, ignore_result=True, serializer="json")  # type: ignore[untyped-decorator]
    def raw_noop(sent: float) -> None:
        """The same no-op as a plain Celery task: records (sent, started) in Redis."""
        started = time.time()
        client = _redis(broker)
        client.rpush(f"{queue}:done", f"{sent} {started}")

    return app, service


_clients: dict[str, object] = {}


def _redis(url: str) -> Any:
    client = _clients.get(url)
    if client is None:
        import redis

        client = _clients[url] = redis.Redis.from_url(url)
    return client


if "TASKMGR_BENCH_BROKER" in os.environ:
    app, service = build(
        os.environ["TASKMGR_BENCH_BROKER"],
        os.environ["TASKMGR_BENCH_DATABASE"],
        os.environ["TASKMGR_BENCH_QUEUE"],
    )
