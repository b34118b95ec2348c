"""The alert rules, driven by hand with a fake clock: each rule opens one incident when
it breaks and resolves it when it holds again; a job keeps failing without a storm of
incidents; a job inherits the service's thresholds unless it has its own; listeners are
told; bad thresholds are refused with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from taskmgr import (
    AlertRule,
    AlertSettings,
    IncidentEvent,
    IncidentEventKind,
    InvalidAlertError,
    InvalidWebhookError,
    SchedulerService,
    scheduled_job,
)
from taskmgr.core.alerts import AlertDefaults, threshold
from taskmgr.settings import load_settings
from taskmgr.storage import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service
from tests.alerts import jobs

T0 = "2026-01-05T09:00:00+00:00"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(autouse=True)
def _switches() -> Iterator[None]:
    jobs.FAILING.clear()
    jobs.RELEASE.clear()
    yield
    jobs.RELEASE.set()
    jobs.FAILING.clear()


def open_incidents(service: SchedulerService) -> list[tuple[str | None, AlertRule]]:
    return [(i.job_key, i.rule) for i in service.list_incidents(open_only=True)]


def fire(service: SchedulerService, clock: FakeClock, seconds: float = 1) -> None:
    clock.advance(seconds)
    service.run_due()


def test_failing_opens_one_incident_however_long_it_fails_and_a_success_resolves_it(
    clock: FakeClock,
) -> None:
    with make_test_service(jobs=[jobs.flaky], clock=clock) as service:
        jobs.FAILING.set()
        fire(service, clock)
        assert service.check_alerts() is not None
        assert open_incidents(service) == []  # one failure: alert_failures is 2
        fire(service, clock)
        changes = service.check_alerts()
        assert changes is not None
        [incident] = changes.opened
        assert (incident.job_key, incident.rule) == ("alerts.flaky", AlertRule.FAILING)
        assert incident.message == (
            "the last 2 runs failed (latest: RuntimeError: the report server is down)"
        )
        assert incident.notify_state is None  # no webhook
        for _ in range(5):  # it goes on failing: still the one incident
            fire(service, clock)
            assert not service.check_alerts()
        assert len(service.list_incidents()) == 1
        assert service.health().open_incidents == 1

        jobs.FAILING.clear()
        fire(service, clock)
        changes = service.check_alerts()
        assert changes is not None
        [resolved] = changes.resolved
        assert resolved.id == incident.id and resolved.resolved_at == clock.now()
        assert open_incidents(service) == []
        assert service.health().open_incidents == 0

        # a new breach is a new incident
        jobs.FAILING.set()
        fire(service, clock)
        fire(service, clock)
        changes = service.check_alerts()
        assert changes is not None and [i.id for i in changes.opened] == [incident.id + 1]


def test_a_slot_not_taken_is_late_until_it_is_taken(clock: FakeClock) -> None:
    with make_test_service(jobs=[jobs.hourly], clock=clock) as service:
        slot = service.get_job("alerts.hourly").next_run_at
        assert slot is not None
        clock.set(slot + timedelta(seconds=29))
        service.check_alerts()
        assert open_incidents(service) == []
        clock.set(slot + timedelta(seconds=31))  # nobody claimed it (the scheduler is down)
        service.check_alerts()
        [incident] = service.list_incidents(open_only=True)
        assert incident.rule is AlertRule.LATE
        assert incident.since == slot + timedelta(seconds=30)
        assert incident.details["kind"] == "slot"
        service.run_due()  # within its misfire grace: it runs
        changes = service.check_alerts()
        assert changes is not None and [i.id for i in changes.resolved] == [incident.id]


def test_a_missed_slot_is_late_until_a_later_slot_runs(clock: FakeClock) -> None:
    with make_test_service(jobs=[jobs.missable], clock=clock) as service:
        slot = service.get_job("alerts.missable").next_run_at
        assert slot is not None
        clock.set(slot + timedelta(seconds=20))
        assert service.run_due() == []  # past its misfire grace: recorded missed
        [missed] = service.list_executions("alerts.missable").items
        assert missed.status == "missed"
        service.check_alerts()
        [incident] = service.list_incidents(open_only=True)
        assert (incident.rule, incident.details["kind"]) == (AlertRule.LATE, "missed")
        assert "was missed and no later slot has run" in incident.message
        clock.set(slot + timedelta(seconds=60))
        [ran] = service.run_due()
        assert ran.status == "success"
        changes = service.check_alerts()
        assert changes is not None and [i.id for i in changes.resolved] == [incident.id]


def test_a_run_going_on_too_long_overruns_until_it_ends(clock: FakeClock) -> None:
    with make_test_service(jobs=[jobs.slow], clock=clock) as service:
        slot = service.get_job("alerts.slow").next_run_at
        assert slot is not None
        clock.set(slot)
        [running] = service.run_due(wait=False)
        clock.advance(29)
        service.check_alerts()
        assert open_incidents(service) == []
        clock.advance(2)
        service.check_alerts()
        [incident] = service.list_incidents(open_only=True)
        assert incident.rule is AlertRule.OVERRUNNING
        assert incident.details["execution_id"] == running.id
        jobs.RELEASE.set()
        assert service.wait(running.id, timeout=30).status == "success"
        changes = service.check_alerts()
        assert changes is not None and [i.id for i in changes.resolved] == [incident.id]


def test_no_success_within_a_window_counts_from_the_job_s_creation(clock: FakeClock) -> None:
    with make_test_service(jobs=[jobs.daily], clock=clock) as service:
        created = service.get_job("alerts.daily").created_at
        clock.set(created + timedelta(seconds=3599))
        service.check_alerts()
        assert open_incidents(service) == []
        clock.set(created + timedelta(seconds=3601))
        service.check_alerts()
        [incident] = service.list_incidents(open_only=True)
        assert incident.rule is AlertRule.NO_SUCCESS
        assert incident.details["last_success_at"] is None
        assert "since it was created or changed" in incident.message
        service.trigger_job("alerts.daily")
        service.run_due()
        changes = service.check_alerts()
        assert changes is not None and [i.id for i in changes.resolved] == [incident.id]


def test_a_job_inherits_the_service_s_thresholds_unless_it_has_its_own(clock: FakeClock) -> None:
    settings = AlertSettings(late_after=60, failures=5, max_runtime=600, no_success_within=7200)
    with make_test_service(
        jobs=[jobs.flaky, jobs.steady, jobs.a_task], clock=clock, alerts=settings
    ) as service:
        defaults = settings.defaults
        flaky, steady, a_task_job = (
            service.get_job(key) for key in ("alerts.flaky", "alerts.steady", "alerts.a-task")
        )
        assert threshold(flaky, AlertRule.FAILING, defaults) == 2  # its own
        assert threshold(steady, AlertRule.FAILING, defaults) == 5  # the service's
        assert threshold(steady, AlertRule.LATE, defaults) == 60
        # a task has no slots and no rhythm: only its own late/no-success thresholds
        assert threshold(a_task_job, AlertRule.LATE, defaults) is None
        assert threshold(a_task_job, AlertRule.NO_SUCCESS, defaults) is None
        assert threshold(a_task_job, AlertRule.OVERRUNNING, defaults) == 600
        assert threshold(steady, AlertRule.LATE, AlertDefaults()) is None

        clock.advance(7201)  # nothing ran: steady has had no success for two hours
        service.check_alerts()
        found = sorted(open_incidents(service))
        assert ("alerts.steady", AlertRule.NO_SUCCESS) in found
        assert ("alerts.steady", AlertRule.LATE) in found
        assert not [key for key, _ in found if key == "alerts.a-task"]


def test_a_paused_job_s_incidents_resolve(clock: FakeClock) -> None:
    with make_test_service(jobs=[jobs.flaky], clock=clock) as service:
        jobs.FAILING.set()
        fire(service, clock)
        fire(service, clock)
        service.check_alerts()
        assert open_incidents(service) == [("alerts.flaky", AlertRule.FAILING)]
        service.pause_job("alerts.flaky", reason="known outage")
        changes = service.check_alerts()
        assert changes is not None and len(changes.resolved) == 1


def test_listeners_are_told_of_each_incident_opened_and_resolved(clock: FakeClock) -> None:
    told: list[IncidentEvent] = []
    with make_test_service(jobs=[jobs.flaky], clock=clock) as service:
        service.add_incident_listener(told.append)
        service.add_incident_listener(_broken_listener)  # logged; the others still run
        jobs.FAILING.set()
        fire(service, clock)
        fire(service, clock)
        service.check_alerts()
        jobs.FAILING.clear()
        fire(service, clock)
        service.check_alerts()
        assert service.events.flush(10)
        service.remove_incident_listener(told.append)
    assert [event.kind for event in told] == [
        IncidentEventKind.OPENED,
        IncidentEventKind.RESOLVED,
    ]
    assert told[0].incident.id == told[1].incident.id
    assert told[0].instance_id == service.instance_id
    assert told[1].incident.resolved_at is not None


def undeclared() -> None:
    return None


def _broken_listener(event: IncidentEvent) -> None:
    raise RuntimeError("a listener that fails")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("alert_late_after", 0),
        ("alert_late_after", -5),
        ("alert_failures", 0),
        ("alert_failures", 2.5),
        ("alert_max_runtime", timedelta(0)),
        ("alert_no_success_within", float("nan")),
        ("alert_late_after", True),
    ],
)
def test_a_threshold_that_is_not_positive_is_refused_and_nothing_is_stored(
    clock: FakeClock, option: str, value: object
) -> None:
    with pytest.raises(InvalidAlertError) as declared:
        scheduled_job("alerts.bad", interval=60, **{option: value})(undeclared)
    assert declared.value.field == option
    with make_test_service(jobs=[jobs.steady], clock=clock) as service:
        logged = service.list_audit().items  # the job declared in code
        with pytest.raises(InvalidAlertError):
            service.create_job("alerts.made", jobs.steady, interval=60, **{option: value})
        assert [job.key for job in service.list_jobs()] == ["alerts.steady"]
        before = service.get_job("alerts.steady")
        with pytest.raises(InvalidAlertError):
            service.update_job("alerts.steady", **{option: value})
        assert service.get_job("alerts.steady") == before
        assert service.list_audit().items == logged  # nothing was recorded either


def test_thresholds_are_changed_and_cleared_like_any_option(clock: FakeClock) -> None:
    with make_test_service(jobs=[jobs.steady], clock=clock) as service:
        job = service.create_job(
            "alerts.made", jobs.steady, interval=60, alert_late_after=timedelta(minutes=5)
        )
        assert job.alert_late_after == 300.0
        job = service.update_job("alerts.made", alert_failures=3, alert_late_after=None)
        assert (job.alert_failures, job.alert_late_after) == (3, None)
        [entry, *_] = service.list_audit("alerts.made").items
        assert entry.details["changes"]["alert_failures"] == {"before": None, "after": 3}


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"late_after": 0}, InvalidAlertError),
        ({"failures": -1}, InvalidAlertError),
        ({"no_success_within": -0.5}, InvalidAlertError),
        ({"webhook_url": "ftp://example.com/hook"}, InvalidWebhookError),
        ({"webhook_url": "file:///etc/passwd"}, InvalidWebhookError),
        ({"webhook_url": "https://"}, InvalidWebhookError),
        ({"webhook_url": "example.com/hook"}, InvalidWebhookError),
        ({"webhook_url": "https://user:pw@example.com/hook"}, InvalidWebhookError),
        ({"webhook_url": "https://example.com/a b"}, InvalidWebhookError),
        ({"webhook_secret": 42}, InvalidWebhookError),
    ],
)
def test_bad_alert_settings_are_refused_with_a_specific_error(
    settings: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        AlertSettings(**settings)  # type: ignore[arg-type]


def test_the_environment_configures_alerting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMGR_ALERT_FAILURES", "3")
    monkeypatch.setenv("TASKMGR_ALERT_LATE_AFTER", "120")
    monkeypatch.setenv("TASKMGR_ALERT_WEBHOOK_URL", "https://hooks.example.com/t?token=s3cret")
    monkeypatch.setenv("TASKMGR_ALERT_WEBHOOK_SECRET", "k3y")
    service = SchedulerService(MemoryStorage(), background=False)
    try:
        alerts = service.alerts
        assert (alerts.failures, alerts.late_after, alerts.max_runtime) == (3, 120.0, None)
        assert alerts.secret() == b"k3y"
        shown = service.configuration
        assert shown["alert_webhook_url"] == "https://hooks.example.com/t?token=***"
        assert shown["alert_webhook_secret"] == "***"
    finally:
        service.close()
    monkeypatch.setenv("TASKMGR_ALERT_LATE_AFTER", "0")
    with pytest.raises(InvalidAlertError):
        load_settings()
    monkeypatch.setenv("TASKMGR_ALERT_LATE_AFTER", "60")
    monkeypatch.setenv("TASKMGR_ALERT_WEBHOOK_URL", "gopher://example.com")
    with pytest.raises(InvalidWebhookError):
        load_settings()


def test_the_configuration_shows_the_alerting_the_service_was_given() -> None:
    alerts = AlertSettings(
        failures=4,
        webhook_url="https://hooks.example.com/x?token=t0ken-abc",
        webhook_secret="s3cret-key",
    )
    service = SchedulerService(MemoryStorage(), background=False, alerts=alerts)
    shown = service.configuration
    assert (shown["alert_failures"], shown["alert_late_after"]) == (4, None)
    assert shown["alert_webhook_url"] == "https://hooks.example.com/x?token=***"
    assert shown["alert_webhook_secret"] == "***"
    assert "t0ken-abc" not in repr(alerts) and "s3cret-key" not in repr(alerts)
