"""The Prometheus side of alerting: each job overdue or failing (0 or 1, read from the
open incidents, the same answer from every process), the open incidents by rule, and
this process's webhook deliveries by outcome."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from taskmgr import AlertSettings
from taskmgr.prometheus import TaskmgrCollector
from taskmgr.testing import FakeClock, make_test_service
from tests.alerts import jobs
from tests.alerts.hook import serve_hook


@pytest.fixture(autouse=True)
def _switches() -> Iterator[None]:
    jobs.FAILING.clear()
    yield
    jobs.FAILING.clear()


def test_gauges_follow_the_open_incidents_and_counters_the_deliveries() -> None:
    clock = FakeClock("2026-01-05T09:00:00+00:00")
    registry = CollectorRegistry()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    with serve_hook() as hook:
        hook.statuses = [500]
        alerts = AlertSettings(webhook_url=hook.url)
        service = make_test_service(jobs=[jobs.flaky, jobs.hourly], clock=clock, alerts=alerts)
        with service:
            collector = TaskmgrCollector(service, registry=registry)
            assert value("taskmgr_job_failing", job="alerts.flaky") == 0
            assert value("taskmgr_job_overdue", job="alerts.hourly") == 0
            jobs.FAILING.set()
            for _ in range(2):
                clock.advance(1)
                service.run_due()
            slot = service.get_job("alerts.hourly").next_run_at
            assert slot is not None
            clock.set(slot + timedelta(seconds=31))  # the hourly slot is not taken
            service.check_alerts()
            assert value("taskmgr_job_failing", job="alerts.flaky") == 1
            assert value("taskmgr_job_failing", job="alerts.hourly") == 0
            assert value("taskmgr_job_overdue", job="alerts.hourly") == 1
            assert value("taskmgr_incidents_open", rule="failing") == 1
            assert value("taskmgr_incidents_open", rule="late") == 1
            assert value("taskmgr_incidents_open", rule="overrunning") == 0
            # the first two attempts: one answered 500, one delivered
            assert value("taskmgr_alert_webhook_deliveries_total", outcome="failed") == 1
            assert value("taskmgr_alert_webhook_deliveries_total", outcome="delivered") == 1
            jobs.FAILING.clear()
            service.run_due()
            service.check_alerts()
            assert value("taskmgr_job_failing", job="alerts.flaky") == 0
            assert value("taskmgr_job_overdue", job="alerts.hourly") == 0
            collector.close()
