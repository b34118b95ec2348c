"""The worker's event loop, without a worker: a time limit raised in the waiting thread
by a signal handler (as Celery's soft limit is) cancels the ``async def`` job through the
loop and is recorded as its timeout; the loop survives and serves the next run; a new
process would get a loop of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from taskmgr.celery.loop import WorkerLoop
from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    JobDefinition,
    JobSource,
    JobState,
)
from taskmgr.core.triggers import Manual
from taskmgr.execution.run import ExecutionRun
from taskmgr.storage.base import Claimed
from taskmgr.storage.common import job_from_definition
from taskmgr.testing import FakeClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class SoftLimitError(Exception):
    """Stands for Celery's SoftTimeLimitExceeded."""


def _run(func: Any, timeout: float | None = None) -> ExecutionRun:
    job = job_from_definition(
        JobDefinition(key="loop.job", func="loop.job", trigger=Manual(), timeout=timeout),
        job_id=1,
        source=JobSource.CODE,
        state=JobState.ACTIVE,
        next_run_at=None,
        fingerprint=None,
        now=NOW,
    )
    execution = Execution(
        id="e1",
        job_id=1,
        job_key="loop.job",
        scheduled_for=NOW,
        attempt=1,
        chain_id="e1",
        trigger=ExecutionTrigger.MANUAL,
        status=ExecutionStatus.RUNNING,
        due_at=NOW,
        created_at=NOW,
    )
    return ExecutionRun(
        Claimed(execution, job), "worker-1", FakeClock(NOW), timeout_errors=(SoftLimitError,)
    )


@pytest.fixture
def loop() -> Iterator[WorkerLoop]:
    worker_loop = WorkerLoop()
    try:
        yield worker_loop
    finally:
        worker_loop.close()


@pytest.fixture
def soft_limit_in(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Arms SIGALRM to raise SoftLimitError in this (the main) thread after some seconds."""
    assert threading.current_thread() is threading.main_thread()

    def raise_limit(signum: int, frame: Any) -> None:
        raise SoftLimitError("soft time limit exceeded")

    previous = signal.signal(signal.SIGALRM, raise_limit)
    try:
        yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_soft_limit_in_the_waiting_thread_cancels_the_job_on_the_loop(
    loop: WorkerLoop, soft_limit_in: Any
) -> None:
    seen: list[str] = []
    gate = asyncio.Event()  # never set: the job waits until it is cancelled

    async def job() -> None:
        seen.append("started")
        try:
            await gate.wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    soft_limit_in(0.2)
    outcome = loop.run(_run(job), job)

    assert outcome.status is ExecutionStatus.TIMEOUT
    assert seen == ["started", "cancelled"]

    # the same loop serves the next run, and a job's own timeout still works
    async def where() -> int:
        return id(asyncio.get_running_loop())

    assert loop.run(_run(where), where).result_summary == id(loop.loop())

    async def slow() -> None:
        await asyncio.sleep(30)

    assert loop.run(_run(slow, timeout=0.1), slow).status is ExecutionStatus.TIMEOUT


def test_a_cancellation_without_a_time_limit_ends_the_span_and_goes_through() -> None:
    async def job() -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        run = _run(job)
        task = asyncio.ensure_future(run.call_async(job))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_forked_process_gets_a_loop_of_its_own(
    loop: WorkerLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = loop.loop()
    assert loop.loop() is first
    first_thread = loop._thread
    assert first_thread is not None
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as a child sees it after a fork
    second = loop.loop()
    assert second is not first
    loop.close()  # the child's loop, in the "child"
    assert second.is_closed()
    monkeypatch.undo()
    # the parent's loop, left to the parent in a real fork
    first.call_soon_threadsafe(first.stop)
    first_thread.join(5)
    first.close()
