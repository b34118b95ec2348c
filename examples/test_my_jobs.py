"""Testing your own jobs: a fake clock, an in-memory service, and ``run_due()``.

Run it with pytest::

    pytest examples/test_my_jobs.py

Nothing sleeps and nothing depends on the wall clock: the service fires only when
``run_due()`` is called, at the time of the ``FakeClock`` you move. In a real
project the jobs live in your application and the tests import them.
"""

from __future__ import annotations

import importlib.util

import pytest

from taskmgr import (
    AsyncSchedulerService,
    ExecutionStatus,
    ExecutionTrigger,
    SchedulerService,
    current_execution,
    scheduled_job,
    task,
)
from taskmgr.testing import FakeClock, make_test_service

#: ``async def`` tests need an async test runner; pytest-asyncio is the usual one.
async_test = (
    pytest.mark.asyncio
    if importlib.util.find_spec("pytest_asyncio")
    else pytest.mark.skip(reason="async tests need pytest-asyncio")
)

# -- the jobs under test -------------------------------------------------------------


@scheduled_job("reports.daily", cron="0 9 * * MON-FRI", timezone="Europe/Berlin")
def send_daily_report(recipients: int = 3) -> dict[str, int]:
    return {"sent": recipients}


@scheduled_job(
    "billing.sync", interval=15 * 60, max_retries=2, retry_backoff={"base": 10, "max": 60}
)
def sync_billing() -> str:
    context = current_execution()
    if context is not None and context.attempt == 1:
        raise ConnectionError("billing API unreachable")
    return "synced"


@task("mail.welcome")
async def send_welcome(user_id: int) -> str:
    return f"welcome, user {user_id}"


# -- the tests -------------------------------------------------------------------------


def test_the_report_runs_at_nine_in_berlin_on_weekdays() -> None:
    # Monday 5 January 2026, 08:59 in Berlin (UTC+1 in winter)
    clock = FakeClock("2026-01-05T07:59:00+00:00")
    with make_test_service(jobs=[send_daily_report], clock=clock) as service:
        assert service.run_due() == []  # not yet

        clock.advance(minutes=1)
        [execution] = service.run_due()

        assert execution.status is ExecutionStatus.SUCCESS
        assert execution.result_summary == {"sent": 3}
        assert service.preview("reports.daily", 1)[0].isoformat() == "2026-01-06T08:00:00+00:00"


def test_a_failed_sync_is_retried_after_its_backoff() -> None:
    clock = FakeClock("2026-01-05T12:00:00+00:00")
    with make_test_service(jobs=[sync_billing], clock=clock) as service:
        clock.advance(minutes=15)
        [first] = service.run_due()
        assert first.status is ExecutionStatus.FAILED
        assert first.error_message == "billing API unreachable"

        clock.advance(seconds=10)  # the first retry waits at most base=10 seconds
        [retry] = service.run_due()

        assert retry.status is ExecutionStatus.SUCCESS
        assert (retry.attempt, retry.trigger) == (2, ExecutionTrigger.RETRY)
        assert retry.scheduled_for == first.scheduled_for  # the same slot, a new attempt


def test_a_manual_run_takes_its_own_kwargs() -> None:
    with make_test_service(jobs=[send_daily_report]) as service:
        service.trigger_job("reports.daily", kwargs={"recipients": 10}, actor="alice")
        [execution] = service.run_due()

        assert execution.trigger is ExecutionTrigger.MANUAL
        assert execution.result_summary == {"sent": 10}
        assert execution.actor == "alice"


# -- the same with the fixtures taskmgr's pytest plugin brings -------------------------


@pytest.fixture
def taskmgr_jobs() -> list[object]:
    """What the plugin's services register (in a real project: in ``conftest.py``)."""
    return [send_daily_report, send_welcome]


def test_the_plugin_fixtures(taskmgr_clock: FakeClock, taskmgr_service: SchedulerService) -> None:
    taskmgr_clock.set("2026-01-05T08:00:00Z")  # 09:00 in Berlin, a Monday
    [execution] = taskmgr_service.run_due()
    assert execution.job_key == "reports.daily"


@async_test
async def test_a_task_deferred_from_async_code(
    taskmgr_async_service: AsyncSchedulerService,
) -> None:
    await taskmgr_async_service.defer(send_welcome, user_id=7)
    [execution] = await taskmgr_async_service.run_due()
    assert execution.status is ExecutionStatus.SUCCESS
    assert execution.result_summary == "welcome, user 7"
