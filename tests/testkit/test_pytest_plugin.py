"""The pytest plugin (``taskmgr.pytest_plugin``), as a host's test suite sees it: loaded
by its entry point, its fixtures used from sync tests and from ``async def`` tests run
by pytest-asyncio, where the test kit's helpers are called both ways."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytestmark = pytest.mark.timeout(60)

#: The host's pytest configuration: pytest-asyncio in strict mode, warnings are errors.
#: taskmgr was imported by this (outer) session before the inner one marked it for
#: assertion rewriting: that warning is about the in-process run, not the plugin.
INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning
"""

JOBS = """
import asyncio

from taskmgr import scheduled_job, task


@scheduled_job("reports.hourly", cron="0 * * * *")
def hourly_report() -> str:
    return "sent"


@task("mail.send")
async def send_mail(to: str) -> str:
    await asyncio.sleep(0)
    return f"mailed {to}"
"""

CONFTEST = """
import pytest

from jobs import hourly_report, send_mail


@pytest.fixture
def taskmgr_jobs():
    return [hourly_report, send_mail]
"""

SYNC_TESTS = """
from datetime import UTC, datetime

from taskmgr import ExecutionStatus
from taskmgr.testing import FakeClock


def test_the_clock_starts_where_documented(taskmgr_clock):
    assert isinstance(taskmgr_clock, FakeClock)
    assert taskmgr_clock.now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_memory_service_fires_when_the_clock_moves(taskmgr_clock, taskmgr_service):
    assert taskmgr_service.running
    assert taskmgr_service.run_due() == []
    taskmgr_clock.set("2026-01-01T00:59:00Z")
    assert taskmgr_service.run_due() == []
    taskmgr_clock.advance(minutes=1)
    [run] = taskmgr_service.run_due()
    assert (run.job_key, run.status, run.result_summary) == (
        "reports.hourly", ExecutionStatus.SUCCESS, "sent"
    )


def test_sqlite_service_keeps_its_database_in_tmp_path(
    taskmgr_clock, taskmgr_sqlite_service, tmp_path
):
    assert (tmp_path / "taskmgr.db").exists()
    taskmgr_sqlite_service.defer("mail.send", to="ada")  # an async job, from a sync test
    [run] = taskmgr_sqlite_service.run_due()
    assert run.result_summary == "mailed ada"


def test_each_test_gets_a_fresh_service(taskmgr_service):
    assert taskmgr_service.list_executions().items == []
"""

ASYNC_TESTS = """
import asyncio

import pytest

from taskmgr import AsyncSchedulerService, ExecutionStatus, ServiceStateError
from taskmgr.testing import FakeClock, make_test_service

from jobs import send_mail


@pytest.mark.asyncio
async def test_await_run_due_of_the_async_fixture(taskmgr_clock, taskmgr_async_service):
    await taskmgr_async_service.defer(send_mail, to="grace")
    taskmgr_clock.advance(hours=1)
    runs = await taskmgr_async_service.run_due()
    assert sorted((r.job_key, r.result_summary) for r in runs) == [
        ("mail.send", "mailed grace"),
        ("reports.hourly", "sent"),
    ]


@pytest.mark.asyncio
async def test_sync_run_due_of_the_fixture_works_in_an_async_test(taskmgr_service):
    # started outside the test's loop: its async jobs have a loop of their own
    taskmgr_service.defer(send_mail, to="alan")
    [run] = taskmgr_service.run_due()
    assert run.result_summary == "mailed alan"


@pytest.mark.asyncio
async def test_a_service_started_on_the_test_loop_is_awaited():
    clock = FakeClock("2026-01-05T08:00:00Z")
    service = make_test_service([send_mail], clock=clock)
    async with AsyncSchedulerService(service) as aservice:
        await aservice.defer(send_mail, to="edsger")
        [run] = await aservice.run_due()  # runs on this loop while awaited
        assert run.status is ExecutionStatus.SUCCESS
    assert not service.running


@pytest.mark.asyncio
async def test_sync_run_due_on_the_test_loop_says_what_to_do_and_shutdown_returns():
    with make_test_service([send_mail], clock=FakeClock()) as service:
        service.defer(send_mail, to="barbara")
        with pytest.raises(ServiceStateError, match="await it instead"):
            service.run_due()
        service.run_due(wait=False)
    # the `with` exit's shutdown returned although the run was handed to this loop
    [run] = service.list_executions().items
    assert run.status is ExecutionStatus.CANCELLED
"""


def test_the_plugin_is_registered_by_its_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("taskmgr") == "taskmgr.pytest_plugin"


def test_a_host_suite_uses_the_fixtures_from_sync_and_async_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(jobs=JOBS, test_sync=SYNC_TESTS, test_async=ASYNC_TESTS)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=8)
    plugins = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")
    plugins.stdout.fnmatch_lines(["*taskmgr_service*", "*taskmgr_sqlite_service*"])
