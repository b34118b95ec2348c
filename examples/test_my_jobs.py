"""Testing your own jobs: a fake clock, an in-memory service, and ``run_due()``.

Run it with pytest::

    pytest examples/test_my_jobs.py

Nothing sleeps and nothing depends on the wall clock: the service fires only when
``run_due()`` is called, at the time of the ``FakeClock`` you move. In a real
project the jobs live in your application and the tests import them.
"""

from __future__ import annotations

from taskmgr import ExecutionStatus, ExecutionTrigger, current_execution, scheduled_job
from taskmgr.testing import FakeClock, make_test_service

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
