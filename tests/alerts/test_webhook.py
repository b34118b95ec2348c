"""The alert webhook against a real HTTP server on 127.0.0.1: each incident change is one
signed POST; a failed attempt is retried after its backoff, then delivered (or given
up); a server that hangs times out without holding up the scheduler's claims."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from taskmgr import (
    AlertSettings,
    InlineDispatcher,
    NotifyState,
    SchedulerService,
    verify_webhook_signature,
)
from taskmgr.storage import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service
from tests.alerts import jobs
from tests.alerts.hook import Hook, serve_hook

SECRET = "s3cret-signing-key"


@pytest.fixture
def hook() -> Iterator[Hook]:
    with serve_hook() as found:
        yield found


@pytest.fixture(autouse=True)
def _switches() -> Iterator[None]:
    jobs.FAILING.clear()
    yield
    jobs.FAILING.clear()


def fail_twice(service: SchedulerService, clock: FakeClock) -> None:
    jobs.FAILING.set()
    for _ in range(2):
        clock.advance(1)
        service.run_due()


def test_each_change_is_one_signed_post(hook: Hook) -> None:
    clock = FakeClock("2026-01-05T09:00:00+00:00")
    alerts = AlertSettings(webhook_url=hook.url, webhook_secret=SECRET)
    with make_test_service(jobs=[jobs.flaky], clock=clock, alerts=alerts) as service:
        fail_twice(service, clock)
        service.check_alerts()
        sent_at = clock.now()
        for _ in range(3):  # it goes on failing: nothing more is sent
            clock.advance(1)
            service.run_due()
            service.check_alerts()
        [request] = hook.requests
        headers, body = request["headers"], request["body"]
        assert request["path"] == "/hooks/taskmgr?token=t"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Taskmgr-Event"] == "incident.opened"
        assert verify_webhook_signature(
            SECRET,
            body,
            timestamp=headers["X-Taskmgr-Timestamp"],
            signature=headers["X-Taskmgr-Signature"],
            now=clock.now().timestamp(),
        )
        assert not verify_webhook_signature(  # another body, or a replay much later
            SECRET,
            body + b" ",
            timestamp=headers["X-Taskmgr-Timestamp"],
            signature=headers["X-Taskmgr-Signature"],
            now=clock.now().timestamp(),
        )
        assert not verify_webhook_signature(
            SECRET,
            body,
            timestamp=headers["X-Taskmgr-Timestamp"],
            signature=headers["X-Taskmgr-Signature"],
            now=clock.now().timestamp() + 3600,
        )
        sent = json.loads(body)
        assert sent["event"] == "incident.opened"
        assert sent["incident"]["job_key"] == "alerts.flaky"
        assert sent["incident"]["rule"] == "failing"
        assert sent["incident"]["resolved_at"] is None
        [incident] = service.list_incidents()
        assert headers["X-Taskmgr-Delivery"] == f"{incident.id}:incident.opened"
        assert (incident.notify_state, incident.notify_attempts) == (NotifyState.DELIVERED, 1)
        assert incident.notified_at == sent_at
        assert headers["X-Taskmgr-Timestamp"] == str(int(sent_at.timestamp()))

        jobs.FAILING.clear()
        clock.advance(1)
        service.run_due()
        service.check_alerts()
        assert len(hook.requests) == 2
        resolved = json.loads(hook.requests[1]["body"])
        assert resolved["event"] == "incident.resolved"
        assert resolved["incident"]["resolved_at"] is not None
        assert service.alert_counts.snapshot() == {"delivered": 2, "failed": 0, "given_up": 0}


def test_a_failed_delivery_is_retried_after_its_backoff_then_delivered(hook: Hook) -> None:
    clock = FakeClock("2026-01-05T09:00:00+00:00")
    hook.statuses = [500, 503]
    alerts = AlertSettings(webhook_url=hook.url, webhook_secret=SECRET)
    with make_test_service(jobs=[jobs.flaky], clock=clock, alerts=alerts) as service:
        fail_twice(service, clock)
        service.check_alerts()
        [incident] = service.list_incidents()
        assert (incident.notify_state, incident.notify_attempts) == (NotifyState.PENDING, 1)
        assert incident.notify_error == "HTTP 500"
        assert incident.notify_next_at == clock.now() + timedelta(seconds=5)
        service.check_alerts()  # not due yet: nothing is sent
        assert len(hook.requests) == 1
        clock.advance(5)
        service.check_alerts()
        [incident] = service.list_incidents()
        assert incident.notify_error == "HTTP 503" and incident.notify_attempts == 2
        clock.advance(10)  # the second backoff is twice the first
        service.check_alerts()
        [incident] = service.list_incidents()
        assert (incident.notify_state, incident.notify_attempts) == (NotifyState.DELIVERED, 3)
        assert incident.notify_error is None
        assert len(hook.requests) == 3
        assert {r["headers"]["X-Taskmgr-Delivery"] for r in hook.requests} == {
            f"{incident.id}:incident.opened"
        }
        assert service.alert_counts.snapshot() == {"delivered": 1, "failed": 2, "given_up": 0}


def test_a_delivery_is_given_up_after_its_attempts(hook: Hook) -> None:
    clock = FakeClock("2026-01-05T09:00:00+00:00")
    hook.statuses = [500] * 10
    alerts = AlertSettings(webhook_url=hook.url, webhook_attempts=2)
    with make_test_service(jobs=[jobs.flaky], clock=clock, alerts=alerts) as service:
        fail_twice(service, clock)
        service.check_alerts()
        clock.advance(5)
        service.check_alerts()
        clock.advance(3600)
        service.check_alerts()
        [incident] = service.list_incidents()
        assert (incident.notify_state, incident.notify_attempts) == (NotifyState.FAILED, 2)
        assert "X-Taskmgr-Signature" not in hook.requests[0]["headers"]  # no secret given
        assert len(hook.requests) == 2
        assert service.alert_counts.snapshot() == {"delivered": 0, "failed": 2, "given_up": 1}


def test_an_unreachable_webhook_is_a_failed_attempt() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock("2026-01-05T09:00:00+00:00")
    alerts = AlertSettings(webhook_url=f"http://127.0.0.1:{port}/", webhook_timeout=2)
    with make_test_service(jobs=[jobs.flaky], clock=clock, alerts=alerts) as service:
        fail_twice(service, clock)
        service.check_alerts()
        [incident] = service.list_incidents()
        assert incident.notify_state is NotifyState.PENDING
        assert incident.notify_error is not None and "refused" in incident.notify_error


def test_a_hanging_webhook_times_out_and_never_holds_up_the_claims(hook: Hook) -> None:
    hook.hold.set()  # the server takes each request and never answers
    alerts = AlertSettings(webhook_url=hook.url, webhook_timeout=0.5, interval=0.1)
    service = SchedulerService(
        MemoryStorage(),
        jobs=[jobs.flaky, jobs.steady],
        dispatcher=InlineDispatcher(max_workers=4),
        poll_interval=0.05,
        alerts=alerts,
    )
    jobs.FAILING.set()
    with service:
        assert hook.arrived.wait(30), "the incident was never sent"
        # while the webhook holds its request, the scheduler goes on: new slots of flaky
        # (every second) are claimed and run
        held_at = _runs(service)
        _wait_for("a claim while the webhook hangs", lambda: _runs(service) >= held_at + 2)
        assert not hook.release.is_set()
        # the attempt times out and is recorded: pending, to be tried again
        _wait_for(
            "the timeout to be recorded",
            lambda: service.list_incidents()[0].notify_error == "timed out after 0.5 s",
        )
        [incident] = service.list_incidents()
        assert incident.notify_state is NotifyState.PENDING
        assert incident.notify_attempts == 1
        hook.release.set()
    assert not service.running


def _runs(service: SchedulerService) -> int:
    return len(service.list_executions("alerts.flaky", limit=500).items)


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
