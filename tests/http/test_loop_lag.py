"""Deferring from ``async def`` code never touches the database on the event loop.

An app served by uvicorn on 127.0.0.1 (in this process) defers many runs at once,
half through the router's ``POST /jobs/{key}/defer``, half through its own ``async
def`` endpoint awaiting ``AsyncSchedulerService.defer``. Every method of the
service's storage is wrapped to note the thread it runs on: none of the calls made
while the requests are served may run on the loop's thread, where a slow database
would stall every other request. The same check catches a host endpoint that calls
the sync ``defer()`` (the second test), so the first one can fail.

How *long* the loop waits is a matter for the benchmark (``benchmarks/loop_lag.py``
reports its lag while deferring 1,000 runs a second), not for a test on a shared
machine.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from taskmgr import AsyncSchedulerService, SchedulerService, task
from taskmgr.fastapi import create_router, lifespan
from taskmgr.storage import Storage

#: Runs deferred concurrently by the awaited variant.
COUNT = 48


@task("lag.noop")
def noop(n: int) -> int:
    return n


@dataclass
class Calls:
    """(method, thread) of every storage call made while ``recording``."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    recording: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, storage: Storage) -> None:
        for name in sorted(Storage.__abstractmethods__):
            setattr(storage, name, self._noted(name, getattr(storage, name)))

    def _noted(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def noted(*args: Any, **kwargs: Any) -> Any:
            if self.recording:
                with self.lock:
                    self.seen.append((name, threading.get_ident()))
            return method(*args, **kwargs)

        return noted

    def on(self, thread: int) -> list[str]:
        return [name for name, ident in self.seen if ident == thread]


def build(service: SchedulerService, loop_thread: list[int]) -> FastAPI:
    aservice = AsyncSchedulerService(service)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop_thread.append(threading.get_ident())
        async with lifespan(aservice):
            yield

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
    on_loop: list[str]
    calls: list[str]


@pytest.fixture
def measure(tmp_path: Path) -> Iterator[Any]:
    services: list[SchedulerService] = []

    def run(posts: list[tuple[str, Any]]) -> Measured:
        service = SchedulerService(
            f"sqlite:///{tmp_path / 'lag.db'}", jobs=[noop], poll_interval=0.2
        )
        services.append(service)
        calls = Calls()
        calls.wrap(service.storage)
        loop_thread: list[int] = []
        with serving(build(service, loop_thread)) as base:
            calls.recording = True
            statuses = asyncio.run(post_all(base, posts))
            calls.recording = False
            executed = _wait_ended(service, statuses.count(202))
        assert executed == statuses.count(202)
        [thread] = loop_thread
        return Measured(statuses, calls.on(thread), [name for name, _ in calls.seen])

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
def test_deferring_from_async_code_keeps_the_database_off_the_loop(measure: Any) -> None:
    posts = [  # the router's route and the host's own, interleaved
        (f"/awaited/{n}", None) if n % 2 else ("/tm/jobs/lag.noop/defer", {"kwargs": {"n": n}})
        for n in range(COUNT)
    ]
    result = measure(posts)
    assert result.statuses == [202] * COUNT
    assert any("defer" in name for name in result.calls), result.calls  # it was watched
    assert result.on_loop == []


@pytest.mark.slow
def test_a_sync_defer_on_the_loop_is_seen(measure: Any) -> None:
    """The check sees a database call on the loop: the test above is one that can fail."""
    result = measure([("/blocking/1", None), ("/blocking/2", None)])
    assert result.statuses == [202, 202]
    assert any("defer" in name for name in result.on_loop), result.on_loop
