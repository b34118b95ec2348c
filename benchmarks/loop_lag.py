"""Event-loop lag while ``async def`` code defers runs (part of the tasks scenario).

An asyncio program defers ``count`` runs at ``rate`` per second through
``AsyncSchedulerService.defer``, each from its own coroutine without waiting for the
previous one (as concurrent requests of an async web app would), on a started
instance that executes them meanwhile. A probe coroutine sleeps 5 ms in a loop and
records how late it wakes up: the lag every other coroutine of the app would see.
Reported: the lag's p99 and max (ms) and the defer rate achieved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from benchmarks._common import Database, Result, percentile, temp_database
from taskmgr import AsyncSchedulerService, InlineDispatcher, SchedulerService

SCENARIO = "tasks"
#: Defers per second asked of the async code.
RATE = 1000
#: How long the probe sleeps each time, in seconds.
PROBE = 0.005
#: Runs deferred (and executed) before anything is measured.
WARMUP = 20
FIGURES = ("loop lag p99 ms", "loop lag max ms", "defers/s")


def noop(n: int) -> int:
    """The runs deferred here: they do nothing."""
    return n


def case(rate: int) -> str:
    return f"deferring {rate}/s from async code"


def run_taskmgr(kind: str, count: int, rate: int = RATE) -> Result:
    """One row: taskmgr on ``kind`` (``sqlite`` or ``postgres``)."""
    with temp_database(kind) as db:
        lags, elapsed = asyncio.run(_measure(db, count, rate))
    figures = {
        "loop lag p99 ms": round(percentile(lags, 99) or 0.0, 2),
        "loop lag max ms": round(max(lags, default=0.0), 2),
        "defers/s": round(count / elapsed),
    }
    return Result(SCENARIO, f"taskmgr {kind}", figures, case=case(rate))


async def _measure(db: Database, count: int, rate: int) -> tuple[list[float], float]:
    service = SchedulerService(
        db.storage(), jobs=[noop], poll_interval=0.5, dispatcher=InlineDispatcher(max_workers=8)
    )
    try:
        async with AsyncSchedulerService(service) as aservice:
            await aservice.create_job("bench.lag", noop)
            await aservice.defer_many("bench.lag", [{"n": n} for n in range(WARMUP)])
            lags: list[float] = []
            probing = asyncio.create_task(_probe(lags))
            elapsed = await _defer_paced(aservice, count, rate)
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing
            return lags, elapsed
    finally:
        await asyncio.to_thread(service.close)


async def _probe(lags: list[float]) -> None:
    while True:
        before = time.perf_counter()
        await asyncio.sleep(PROBE)
        lags.append(max(0.0, time.perf_counter() - before - PROBE) * 1000)


async def _defer_paced(aservice: AsyncSchedulerService, count: int, rate: int) -> float:
    """Start one ``defer`` every ``1 / rate`` seconds, each in its own task; the
    seconds until all of them returned."""
    started = time.perf_counter()
    calls = []
    for n in range(count):
        wait = started + n / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        calls.append(asyncio.create_task(aservice.defer("bench.lag", n=WARMUP + n)))
    await asyncio.gather(*calls)
    return time.perf_counter() - started


def run(count: int, kinds: list[str], rate: int = RATE) -> list[Result]:
    return [run_taskmgr(kind, count, rate) for kind in kinds]
