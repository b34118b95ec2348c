"""One peer of the saturation scenario at one offered rate, in a process of its own
(run by the Python of a virtual environment that has the peer: APScheduler 4 cannot
share one with taskmgr, which needs APScheduler 3). Standard library and the peer
only, no taskmgr:

``python benchmarks/peer_saturation.py PEER LIBPQ_URL SCHEMA RATE WARMUP DURATION``

``PEER`` is ``apscheduler4`` (``Scheduler`` with a ``SQLAlchemyDataStore`` on
PostgreSQL, psycopg) or ``procrastinate`` (periodic tasks, one every second each, a
worker with 8 concurrent jobs). RATE jobs each fire every second; the first
fire is WARMUP seconds away and lateness (start - scheduled) is measured over the
DURATION seconds that start one more WARMUP after the peer is set up. Prints one JSON
object: fires/s, lateness p50/p99/max (ms), missed, peak RSS (MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

_lock = threading.Lock()
_samples: list[tuple[float, float]] = []  # (scheduled, started), seconds since the epoch
#: The measured window [start, end) of slot times, set once the peer is set up.
_window: list[float] = []


def open_window(earliest: float, warmup: float, duration: float, *, whole: bool = False) -> float:
    """Place the window a warm-up after the later of ``earliest`` and now (setting up
    thousands of schedules takes a peer a while); returns when to stop."""
    start = max(earliest, time.time() + warmup)
    if whole:  # procrastinate's slots are whole seconds
        start = float(int(start) + 1)
    _window[:] = [start, start + duration]
    return start + duration + 1.0  # fires scheduled at the end of the window start too


def record(scheduled: float, started: float) -> None:
    with _lock:
        _samples.append((scheduled, started))


# -- APScheduler 4 -------------------------------------------------------------------


def aps4_job() -> None:
    from apscheduler import current_job

    started = time.time()
    record(current_job.get().scheduled_fire_time.timestamp(), started)


def run_aps4(url: str, schema: str, rate: int, warmup: float, duration: float) -> None:
    from apscheduler import Scheduler
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.triggers.interval import IntervalTrigger
    from sqlalchemy import create_engine

    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1).split("?")[0]
    engine = create_engine(sa_url)
    store = SQLAlchemyDataStore(engine, schema=schema)
    first = datetime.now(UTC) + timedelta(seconds=warmup)
    with Scheduler(store) as scheduler:
        for i in range(rate):
            scheduler.add_schedule(
                aps4_job,
                IntervalTrigger(seconds=1, start_time=first + timedelta(seconds=i / rate)),
                id=f"bench.{i:07d}",
                misfire_grace_time=1,
                coalesce="latest",
            )
        until = open_window(first.timestamp() + warmup, warmup, duration)
        scheduler.start_in_background()
        _sleep_until(until)
        scheduler.stop()
    engine.dispose()


# -- procrastinate -------------------------------------------------------------------


def run_procrastinate(url: str, rate: int, warmup: float, duration: float) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, max_size=10))

    def tick(timestamp: int) -> None:
        record(float(timestamp), time.time())

    task = app.task(name="bench.tick", queue="bench", pass_context=False)(tick)
    for i in range(rate):  # one periodic task per "job", every second (6th cron field)
        app.periodic(cron="* * * * * *", periodic_id=f"p{i}")(task)

    async def main() -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            until = open_window(time.time() + warmup, warmup, duration, whole=True)
            worker = asyncio.ensure_future(
                app.run_worker_async(queues=["bench"], concurrency=8, install_signal_handlers=False)
            )
            await asyncio.sleep(max(0.0, until - time.time()))
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(worker, 10)

    asyncio.run(main())


# -- common --------------------------------------------------------------------------


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str]) -> dict[str, Any]:
    peer, url, schema = argv[0], argv[1], argv[2]
    rate, warmup, duration = int(argv[3]), float(argv[4]), float(argv[5])
    if peer == "apscheduler4":
        run_aps4(url, schema, rate, warmup, duration)
    elif peer == "procrastinate":
        run_procrastinate(url, rate, warmup, duration)
    else:
        raise SystemExit(f"unknown peer {peer!r}")
    window_start, window_end = _window
    with _lock:
        late = [(b - a) * 1000 for a, b in _samples if window_start <= a < window_end]
    expected = round(rate * duration)
    return {
        "fires/s": round(len(late) / duration, 1),
        "p50 ms": _round(_percentile(late, 50)),
        "p99 ms": _round(_percentile(late, 99)),
        "max ms": _round(max(late) if late else None),
        "missed": max(0, expected - len(late)),
        "RSS MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    sys.path.insert(0, "")  # the jobs are found by reference, as this module's functions
    print(json.dumps(main(sys.argv[1:])), flush=True)
