"""Scale: 1,000 / 10,000 / 100,000 registered jobs, the same number due every second.

taskmgr (SQLite, one instance, inline): start-up time (``start()`` with the jobs
already stored), CPU per fire while the due jobs fire, and resident memory. Baseline:
Celery beat (``celery.beat.Scheduler``) with the same entries, its sends counted
instead of published (so the broker is not measured): set-up time, CPU per sent
entry, and how many of the due entries it sent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import fire_rate
from benchmarks._common import (
    Lateness,
    Result,
    cpu_seconds,
    insert_interval_jobs,
    percentile,
    rss_now_mb,
    temp_database,
)
from taskmgr import InlineDispatcher, SchedulerService

SCENARIO = "scale"


def run_taskmgr(
    total: int, due: int, duration: float, kind: str = "sqlite", *, warmup: float = 1.0
) -> dict[str, Any]:
    with temp_database(kind) as db:
        fire_rate._record = record = Lateness()
        service = SchedulerService(
            db.storage(), jobs=[fire_rate.bench_job], dispatcher=InlineDispatcher(8)
        )
        storage = service.storage
        storage.open()
        name = service.registry.resolve(fire_rate.bench_job)
        first = datetime.now(UTC) + timedelta(seconds=warmup)
        insert_interval_jobs(storage, name, total, due=due, first_at=first)  # type: ignore[arg-type]
        rss0 = rss_now_mb()
        began = time.perf_counter()
        service.start()
        startup = time.perf_counter() - began
        try:
            window_start = max(time.time() + warmup, first.timestamp() + warmup)
            window_end = window_start + duration
            _sleep_until(window_start)
            cpu0 = cpu_seconds()
            _sleep_until(window_end)
            cpu = cpu_seconds() - cpu0
            time.sleep(0.3)
            rss = rss_now_mb() - rss0
        finally:
            service.shutdown()
            storage.close()
    lateness = [x * 1000 for x in record.window(window_start, window_end)]
    fired = len(lateness)
    return {
        "start-up s": round(startup, 2),
        "CPU us/fire": round(cpu / fired * 1e6) if fired else None,
        "fires/s": round(fired / duration, 1),
        "p99 ms": _round(percentile(lateness, 99)),
        "RSS +MB": round(rss, 1),
    }


def run_celery_beat(total: int, due: int, duration: float) -> dict[str, Any]:
    from celery.beat import Scheduler

    from celery import Celery

    app = Celery("bench", broker="memory://", set_as_current=False)
    schedule: dict[str, dict[str, Any]] = {}
    for i in range(total):
        every = 1.0 if i < due else 86400.0
        schedule[f"bench.{i:07d}"] = {"task": "bench.noop", "schedule": every}
    app.conf.beat_schedule = schedule
    sent = 0

    class CountingScheduler(Scheduler):  # type: ignore[misc]
        def apply_async(
            self, entry: Any, producer: Any = None, advance: bool = True, **kw: Any
        ) -> Any:
            nonlocal sent
            sent += 1
            return None

    rss0 = rss_now_mb()
    began = time.perf_counter()
    scheduler = CountingScheduler(app, lazy=False)
    startup = time.perf_counter() - began
    # Every entry starts "last run now": the 1 s entries come due during the window.
    end = time.time() + duration
    cpu0 = cpu_seconds()
    ticks = 0
    while time.time() < end:
        delay = scheduler.tick()
        ticks += 1
        if delay and delay > 0:
            time.sleep(min(delay, max(0.0, end - time.time())))
    cpu = cpu_seconds() - cpu0
    rss = rss_now_mb() - rss0
    app.close()
    return {
        "start-up s": round(startup, 2),
        "CPU us/fire": round(cpu / sent * 1e6) if sent else None,
        "fires/s": round(sent / duration, 1),
        "p99 ms": None,
        "RSS +MB": round(rss, 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def run(
    totals: list[int],
    due: int,
    duration: float,
    *,
    celery_max: int,
    baselines: bool = True,
    warmup: float = 1.0,
) -> list[Result]:
    results: list[Result] = []
    for total in totals:
        case = f"{total:,} jobs, {due}/s due"
        results.append(
            Result(
                SCENARIO,
                "taskmgr sqlite",
                run_taskmgr(total, due, duration, warmup=warmup),
                case=case,
            )
        )
        if baselines and total <= celery_max:
            results.append(
                Result(
                    SCENARIO,
                    "Celery beat",
                    run_celery_beat(total, due, duration),
                    case=case,
                    note="sends counted, not published",
                )
            )
    return results
