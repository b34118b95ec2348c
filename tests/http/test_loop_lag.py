"""Deferring from ``async def`` code does not stall the event loop.

An app served by uvicorn on 127.0.0.1 (in this process) defers many runs at once,
half through the router's ``POST /jobs/{key}/defer``, half through its own ``async
def`` endpoint awaiting ``AsyncSchedulerService.defer``, while a probe coroutine on
the app's loop measures how late its short sleeps wake up.

The database is made slow on purpose (every write of deferred runs first waits
``LATENCY`` seconds in the thread that makes it) so that the bound holds by a wide
margin either way: done on the loop, a single defer would stall it for ``LATENCY``,
longer than ``BOUND``; done in worker threads, the loop only parses requests. The
same bound fails a host endpoint that calls the sync ``defer()`` (the second test),
so the first one can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from taskmgr import AsyncSchedulerService, SchedulerService, task
from taskmgr.fastapi import create_router, lifespan

#: Seconds every write of deferred runs waits before it starts (a slow database).
LATENCY = 0.5
#: The largest loop lag allowed while deferring; below LATENCY, far above the loop's
#: own work between two wake-ups of the probe.
BOUND = 0.4
#: How often the probe sleeps, in seconds.
PROBE = 0.01
#: Runs deferred concurrently by the awaited variant.
COUNT = 48


@task("lag.noop")
def noop(n: int) -> int:
    return n


@dataclass
class Probe:
    """(fell asleep at, lag) samples of a coroutine sleeping ``PROBE`` seconds in a
    loop. A sample is kept by when its sleep began: the wake-up of a sleep the loop
    held up may come after the client saw its last response."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(PROBE)
            woke = time.perf_counter()
            self.samples.append((before, woke - before - PROBE))

    def max_lag(self, start: float, end: float) -> float:
        lags = [lag for began, lag in self.samples if start <= began <= end]
        assert lags, "the probe did not run"
        return max(lags)


@dataclass
class SlowWrites:
    """Wraps the storage's write of deferred runs: waits ``LATENCY`` first, and adds
    up the time spent in it (what the loop would have waited through)."""

    real: Any
    busy: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        time.sleep(LATENCY)
        try:
            return self.real(*args, **kwargs)
        finally:
            with self.lock:
                self.busy += time.perf_counter() - began


def build(service: SchedulerService, probe: Probe) -> FastAPI:
    aservice = AsyncSchedulerService(service)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(aservice):
            probing = asyncio.create_task(probe.run())
            yield
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing

    app = FastAPI(lifespan=app_lifespan)
    app.include_router(create_router(aservice, public=True, writes="readers"), prefix="/tm")

    @app.post("/awaited/{n}", status_code=202)
    async def awaited(n: int) -> str:
        return (await aservice.defer(noop, n=n)).id

    @app.post("/blocking/{n}", status_code=202)
    async def blocking(n: int) -> str:
        return service.defer(noop, n=n).id  # the mistake: a sync call on the loop

    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port, on a thread of this process."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


async def post_all(base: str, posts: list[tuple[str, Any]]) -> list[int]:
    """Send every (path, JSON body) at once (over at most 24 connections); the
    status codes."""
    limits = httpx2.Limits(max_connections=24)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(*(client.post(path, json=body) for path, body in posts))
    return [response.status_code for response in responses]


@dataclass
class Measured:
    statuses: list[int]
    max_lag: float
    elapsed: float
    busy: float
    service: SchedulerService


@pytest.fixture
def measure(tmp_path: Path) -> Iterator[Any]:
    services: list[SchedulerService] = []

    def run(posts: list[tuple[str, Any]]) -> Measured:
        service = SchedulerService(
            f"sqlite:///{tmp_path / 'lag.db'}", jobs=[noop], poll_interval=0.2
        )
        services.append(service)
        slow = SlowWrites(service.storage.defer_executions)
        service.storage.defer_executions = slow  # type: ignore[method-assign]
        probe = Probe()
        with serving(build(service, probe)) as base:
            start = time.perf_counter()
            statuses = asyncio.run(post_all(base, posts))
            end = time.perf_counter()
            executed = _wait_ended(service, statuses.count(202))
        max_lag = probe.max_lag(start, end)  # the probe has stopped: every sample is in
        assert executed == statuses.count(202)
        return Measured(statuses, max_lag, end - start, slow.busy, service)

    yield run
    for service in services:
        service.close()


def _wait_ended(service: SchedulerService, count: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        runs = service.list_executions("lag.noop", limit=500).items
        if sum(run.status.is_final for run in runs) >= count or time.monotonic() > deadline:
            return sum(run.status.value == "success" for run in runs)
        time.sleep(0.05)


@pytest.mark.slow
def test_deferring_from_async_code_keeps_the_loop_turning(measure: Any) -> None:
    posts = [  # the router's route and the host's own, interleaved
        (f"/awaited/{n}", None) if n % 2 else ("/tm/jobs/lag.noop/defer", {"kwargs": {"n": n}})
        for n in range(COUNT)
    ]
    result = measure(posts)
    assert result.statuses == [202] * COUNT
    assert result.max_lag < BOUND, f"the loop stalled {result.max_lag:.3f}s"
    # On the loop, these writes would have stalled it for their whole duration; in
    # worker threads they overlapped, and the loop kept turning meanwhile.
    assert result.busy >= COUNT * LATENCY
    assert result.elapsed < result.busy / 2


@pytest.mark.slow
def test_a_sync_defer_on_the_loop_breaks_the_bound(measure: Any) -> None:
    """The probe sees a blocked loop: the bound above is one that can fail."""
    result = measure([("/blocking/1", None), ("/blocking/2", None)])
    assert result.statuses == [202, 202]
    assert result.max_lag >= BOUND
