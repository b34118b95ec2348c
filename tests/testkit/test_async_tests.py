"""The test kit from ``async def`` tests (pytest-asyncio): a service started on the
test's event loop runs its ``async def`` jobs there, so a synchronous ``run_due()``
that would block that loop refuses at once instead of timing out, the awaitable form
runs them, and a synchronous shutdown on that loop returns instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from taskmgr import AsyncSchedulerService, ExecutionStatus, ServiceStateError, task
from taskmgr.storage import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]

#: What the blocking job below saw, by test.
seen: dict[str, list[str]] = {}


@task("testkit.where")
async def where() -> int:
    await asyncio.sleep(0)
    return id(asyncio.get_running_loop())


@task("testkit.blocked")
async def blocked(name: str) -> None:
    seen.setdefault(name, []).append("started")
    try:
        await asyncio.Event().wait()  # never set: only a cancellation ends it
    except asyncio.CancelledError:
        seen[name].append("cancelled")
        raise


def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))


async def test_run_due_on_the_loop_of_its_async_jobs_refuses_and_the_awaited_form_runs_them() -> (
    None
):
    storage = MemoryStorage()
    with make_test_service([where], clock=clock(), storage=storage) as service:
        service.defer(where)
        with pytest.raises(ServiceStateError, match="await it instead"):
            service.run_due()
        [pending] = service.list_executions().items
        assert pending.status is ExecutionStatus.PENDING  # refused before claiming

        [run] = await AsyncSchedulerService(service).run_due()

    assert run.status is ExecutionStatus.SUCCESS
    assert run.result_summary == id(asyncio.get_running_loop())


async def test_run_due_without_waiting_is_allowed_on_the_loop() -> None:
    with make_test_service([where], clock=clock()) as service:
        service.defer(where)
        [claimed] = service.run_due(wait=False)
        assert claimed.status is ExecutionStatus.RUNNING
        ended = await AsyncSchedulerService(service).wait(claimed.id, timeout=10)
    assert ended.status is ExecutionStatus.SUCCESS


async def test_a_sync_shutdown_on_the_loop_cancels_a_run_that_had_not_started() -> None:
    storage = MemoryStorage()
    with make_test_service([blocked], clock=clock(), storage=storage) as service:
        service.defer(blocked, name="unstarted")
        [claimed] = service.run_due(wait=False)  # dispatched to this loop, not started
    # the `with` block's shutdown returned: it did not wait on this blocked loop
    await asyncio.sleep(0)  # the loop may now drop the run it was handed
    ended = storage.get_execution(claimed.id)
    assert ended.status is ExecutionStatus.CANCELLED
    assert ended.error_message == "the service shut down before the run started"
    assert "unstarted" not in seen


async def test_a_sync_shutdown_on_the_loop_fails_a_run_suspended_on_it() -> None:
    storage = MemoryStorage()
    with make_test_service([blocked], clock=clock(), storage=storage) as service:
        service.defer(blocked, name="suspended")
        [claimed] = service.run_due(wait=False)
        for _ in range(100):  # let the loop start it; it then waits on its event
            if seen.get("suspended"):
                break
            await asyncio.sleep(0)
        assert seen["suspended"] == ["started"]
    ended = storage.get_execution(claimed.id)
    assert ended.status is ExecutionStatus.FAILED
    assert ended.error_message is not None
    assert "shut down from the event loop the run awaited on" in ended.error_message
    for _ in range(100):  # the loop now delivers the cancellation to the job
        if len(seen["suspended"]) > 1:
            break
        await asyncio.sleep(0)
    assert seen["suspended"] == ["started", "cancelled"]


async def test_an_awaited_shutdown_lets_async_runs_end() -> None:
    with make_test_service([where], clock=clock()) as service:
        service.defer(where)
        [claimed] = service.run_due(wait=False)
        await AsyncSchedulerService(service).shutdown()
        ended = service.get_execution(claimed.id)
    assert ended.status is ExecutionStatus.SUCCESS
