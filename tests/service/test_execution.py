"""Executions end as they should: success with a duration, failed with a traceback and
retries, timeout, context, result summaries. Driven by a fake clock and run_due()."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import taskmgr
from taskmgr import ExecutionStatus, ExecutionTrigger, current_execution, scheduled_job
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC)
seen: list[Any] = []


@scheduled_job(interval=60)
def sleeper(seconds: float = 0.05) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept": seconds}


@scheduled_job(interval=60, max_retries=3, retry_backoff=(2.0, 60.0, 0.5))
def always_fails() -> None:
    raise ValueError("broken on purpose")


@scheduled_job(interval=60, timeout=0.2)
def too_slow() -> str:
    time.sleep(1.5)
    return "late"


@scheduled_job(interval=60, timeout=0.2)
async def too_slow_async() -> str:
    await asyncio.sleep(30)
    return "late"


@scheduled_job(interval=60)
async def async_job() -> str:
    await asyncio.sleep(0)
    seen.append(("loop", id(asyncio.get_running_loop())))
    return "ok"


@scheduled_job(interval=60)
def whoami() -> None:
    seen.append(current_execution())


@scheduled_job(interval=60)
def big_result() -> str:
    return "x" * 10_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def run_one(clock: FakeClock, func: Any, **options: Any) -> taskmgr.Execution:
    with make_test_service([func], clock=clock, **options) as service:
        clock.advance(60)
        [execution] = service.run_due()
        return execution


def test_success_records_duration_and_result(clock: FakeClock) -> None:
    execution = run_one(clock, sleeper)
    assert execution.status is ExecutionStatus.SUCCESS
    assert execution.trigger is ExecutionTrigger.SCHEDULE
    assert execution.scheduled_for == START + timedelta(seconds=60)
    assert execution.duration_ms is not None and execution.duration_ms >= 50
    assert execution.started_at is not None and execution.completed_at is not None
    assert execution.result_summary == {"slept": 0.05}
    assert execution.error_type is None


def test_failure_records_traceback_and_retries_with_growing_jittered_delays(
    clock: FakeClock,
) -> None:
    with make_test_service([always_fails], clock=clock) as service:
        clock.advance(60)
        [first] = service.run_due()
        assert first.status is ExecutionStatus.FAILED
        assert first.error_type == "builtins.ValueError"
        assert first.error_message == "broken on purpose"
        assert first.traceback is not None and "raise ValueError" in first.traceback
        delays = []
        for attempt in (2, 3, 4):
            [retry] = service.list_executions(status="pending").items
            assert retry.attempt == attempt and retry.trigger is ExecutionTrigger.RETRY
            assert retry.scheduled_for == first.scheduled_for  # same slot, next attempt
            delay = (retry.due_at - retry.created_at).total_seconds()
            nominal = min(60.0, 2.0 * 2 ** (attempt - 2))
            assert nominal * 0.5 <= delay <= nominal
            delays.append(delay)
            clock.advance(seconds=delay - 0.5)
            assert service.run_due() == []  # not due before its backoff
            clock.advance(seconds=0.5)
            [ran] = service.run_due()
            assert ran.id == retry.id and ran.status is ExecutionStatus.FAILED
        assert delays == sorted(delays) and len(set(delays)) == 3
        assert delays != [2.0, 4.0, 8.0]  # jittered, not the nominal values
        # attempt 4 was the last one (max_retries=3): nothing pending any more
        assert service.list_executions(status="pending").items == []
        attempts = service.list_executions(job_key=f"{__name__}.always_fails").items
        assert sorted(e.attempt for e in attempts) == [1, 2, 3, 4]


def test_slow_sync_job_records_timeout_and_its_late_result_is_ignored(clock: FakeClock) -> None:
    with make_test_service([too_slow], clock=clock) as service:
        clock.advance(60)
        [execution] = service.run_due()
        assert execution.status is ExecutionStatus.TIMEOUT
        assert "timeout of 0.2s" in (execution.error_message or "")
    # shutdown waited for the thread; its late success did not overwrite the row
    assert service.get_execution(execution.id).status is ExecutionStatus.TIMEOUT


def test_slow_async_job_is_cancelled_at_its_timeout(clock: FakeClock) -> None:
    execution = run_one(clock, too_slow_async)
    assert execution.status is ExecutionStatus.TIMEOUT
    assert execution.duration_ms is not None and execution.duration_ms < 10_000


def test_async_job_runs_on_a_private_loop_outside_asyncio(clock: FakeClock) -> None:
    seen.clear()
    execution = run_one(clock, async_job)
    assert execution.status is ExecutionStatus.SUCCESS
    assert execution.result_summary == "ok"
    assert len(seen) == 1


def test_async_job_runs_on_the_host_loop_when_started_inside_one(clock: FakeClock) -> None:
    seen.clear()

    async def host() -> tuple[int, taskmgr.Execution]:
        service = make_test_service([async_job], clock=clock)
        service.start()
        try:
            clock.advance(60)
            # run_due waits in a thread while the job runs here, on the host loop
            [claimed] = await asyncio.to_thread(service.run_due)
            return id(asyncio.get_running_loop()), service.get_execution(claimed.id)
        finally:
            await asyncio.to_thread(service.shutdown)

    loop_id, execution = asyncio.run(host())
    assert execution.status is ExecutionStatus.SUCCESS
    assert seen == [("loop", loop_id)]


def test_job_reads_its_execution_context(clock: FakeClock) -> None:
    seen.clear()
    execution = run_one(clock, whoami)
    [context] = seen
    assert context.execution_id == execution.id
    assert context.job_key == f"{__name__}.whoami"
    assert context.scheduled_for == execution.scheduled_for
    assert context.attempt == 1
    assert current_execution() is None  # outside a job


def test_large_results_are_summarised_not_stored_whole(clock: FakeClock) -> None:
    execution = run_one(clock, big_result)
    assert execution.result_summary["type"] == "str"
    assert len(execution.result_summary["repr"]) <= 500


def start_held_run(
    clock: FakeClock, key: str, func: Any
) -> tuple[taskmgr.SchedulerService, taskmgr.Execution, threading.Event]:
    """A started service running one run of ``func`` (a ``_module_level_*`` job),
    which has begun and waits until the returned event is set."""
    started = threading.Event()
    release = threading.Event()
    service = make_test_service(clock=clock)
    service.start()
    service.register(func)
    _BLOCKING["started"], _BLOCKING["release"] = started, release
    _SERVICE.append(service)
    service.create_job(key, func, interval=60)
    clock.advance(60)
    [claimed] = service.run_due(wait=False)
    assert started.wait(5)
    return service, claimed, release


def test_shutdown_waits_for_running_executions(clock: FakeClock) -> None:
    service, claimed, release = start_held_run(clock, "blocking", _module_level_blocking)
    stopper = threading.Thread(target=service.shutdown)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # still waiting for the job
    release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert service.get_execution(claimed.id).status is ExecutionStatus.SUCCESS


def test_a_running_job_may_use_the_service_while_shutdown_waits_for_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retention job reads and deletes through its service; a shutdown that waits
    for it must not hold what the job needs (it once held the lock the service's
    commands take, and both waited forever)."""
    service, claimed, release = start_held_run(
        clock, "uses-service", _module_level_uses_the_service
    )
    dispatcher = service.dispatcher
    waits_for_the_job = dispatcher.shutdown

    def shutdown(*, wait: bool = True) -> None:
        release.set()  # the job goes on only once the shutdown is waiting for it
        waits_for_the_job(wait=wait)

    monkeypatch.setattr(dispatcher, "shutdown", shutdown)
    stopper = threading.Thread(target=service.shutdown, daemon=True)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "the shutdown and the job wait for each other"
    execution = service.get_execution(claimed.id)
    assert (execution.status, execution.result_summary) == (
        ExecutionStatus.SUCCESS,
        ["uses-service"],
    )


_BLOCKING: dict[str, threading.Event] = {}
_SERVICE: list[taskmgr.SchedulerService] = []


def _module_level_uses_the_service() -> list[str]:
    _BLOCKING["started"].set()
    _BLOCKING["release"].wait(10)
    return [job.key for job in _SERVICE[-1].list_jobs()]


def _module_level_blocking() -> None:
    _BLOCKING["started"].set()
    _BLOCKING["release"].wait(10)
