"""Pauses and backfills over HTTP, through the real router: bodies, problem details,
who is recorded, and what the job and health documents show."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.testing import FakeClock
from tests.http.conftest import ACTION, READER, assert_problem, url

SOON = "2026-03-02T09:00:00Z"  # the clock starts at 08:00


def test_a_job_paused_with_a_reason_until_a_time_shows_both(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    body = {"reason": "deploy freeze", "until": "2026-03-02T10:00:00+01:00"}
    response = client.post(url("/jobs/http.sync/pause"), json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == "paused" and job["next_run_at"] is None
    assert (job["paused_by"], job["paused_reason"]) == ("alice", "deploy freeze")
    assert (job["paused_at"], job["paused_until"]) == ("2026-03-02T08:00:00Z", SOON)
    assert client.get(url("/jobs/http.sync")).json()["paused_until"] == SOON

    [pause] = client.get(url("/pauses")).json()["items"]
    assert pause == {
        "scope": "job",
        "name": "http.sync",
        "paused_by": "alice",
        "reason": "deploy freeze",
        "paused_at": "2026-03-02T08:00:00Z",
        "until": SOON,
    }
    # without a body it is paused until resumed (the older form), nothing else changes
    bodiless = client.post(url("/jobs/http.report/pause"), headers=ACTION)
    assert bodiless.status_code == 200 and bodiless.json()["paused_until"] is None

    clock.set(SOON)
    service.run_due()  # the claim resumes it, as taskmgr
    assert client.get(url("/jobs/http.sync")).json()["state"] == "active"
    entries = client.get(url("/jobs/http.sync/audit")).json()["items"]
    assert [(e["action"], e["actor"], e["source"]) for e in entries[:2]] == [
        ("resume", "taskmgr", "schedule"),
        ("pause", "alice", "api"),
    ]


def test_a_past_until_and_bad_bodies_are_refused_with_problem_details(
    client: TestClient, service: SchedulerService
) -> None:
    past = {"until": "2026-03-02T07:59:59Z"}
    for path in ("/jobs/http.sync/pause", "/queues/reports/pause", "/pause"):
        body = assert_problem(client.post(url(path), json=past), 422, "until_in_past")
        assert body["errors"][0]["field"] == "until"
    assert_problem(
        client.post(url("/pause"), json={"until": "2026-03-02T09:00:00"}), 422, "validation_error"
    )  # no offset
    assert_problem(client.post(url("/pause"), json={"reason": "x" * 501}), 422)
    assert_problem(client.post(url("/pause"), json={"why": "x"}), 422, "validation_error")
    assert service.list_pauses() == []
    assert service.list_audit(action="pause").items == []


def test_queues_and_the_service_are_paused_resumed_and_listed(
    client: TestClient, service: SchedulerService
) -> None:
    response = client.post(url("/queues/eu.reports/pause"), json={"reason": "migration"})
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "queue" and response.json()["name"] == "eu.reports"
    service_pause = client.post(url("/pause"), json={"reason": "incident", "until": SOON}).json()
    assert (service_pause["scope"], service_pause["name"], service_pause["until"]) == (
        "service",
        None,
        SOON,
    )
    listed = client.get(url("/pauses")).json()["items"]
    assert [(p["scope"], p["name"]) for p in listed] == [("service", None), ("queue", "eu.reports")]
    health = client.get(url("/health")).json()
    assert [p["scope"] for p in health["pauses"]] == ["service", "queue"]

    # a reader sees the pauses, but cannot change them
    assert client.get(url("/pauses"), headers=READER).status_code == 200
    assert_problem(client.post(url("/resume"), headers={**READER, **ACTION}), 403)

    ended = client.post(url("/queues/eu.reports/resume"), headers=ACTION).json()["ended"]
    assert ended["reason"] == "migration"
    assert client.post(url("/queues/eu.reports/resume"), headers=ACTION).json() == {"ended": None}
    assert client.post(url("/resume"), headers=ACTION).json()["ended"]["reason"] == "incident"
    assert client.get(url("/pauses")).json() == {"items": []}
    actions = [(e.action.value, e.actor) for e in service.list_audit().items[:4]]
    assert actions == [("resume", "alice")] * 2 + [("pause", "alice")] * 2


def test_backfill_over_http(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    clock.advance(minutes=10, seconds=30)  # http.sync: every minute from 08:00
    service.pause_job("http.sync")
    service.resume_job("http.sync")  # nothing ran: 08:01-08:10 have no row
    body = {"start": "2026-03-02T08:00:30Z", "end": "2026-03-02T08:05:00Z", "max_runs": 10}
    response = client.post(url("/jobs/http.sync/backfill"), json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "job_key": "http.sync",
        "start": "2026-03-02T08:00:30Z",
        "end": "2026-03-02T08:05:00Z",
        "slots": 5,
        "created": 5,
        "existing": 0,
        "scheduled": 0,
        "first_created": "2026-03-02T08:01:00Z",
        "last_created": "2026-03-02T08:05:00Z",
    }
    runs = client.get(url("/jobs/http.sync/executions")).json()["items"]
    assert {(r["trigger"], r["status"], r["actor"]) for r in runs} == {
        ("backfill", "pending", "alice")
    }
    again = client.post(url("/jobs/http.sync/backfill"), json=body).json()
    assert (again["created"], again["existing"]) == (0, 5)

    too_many = {**body, "max_runs": 2}
    problem = assert_problem(
        client.post(url("/jobs/http.sync/backfill"), json=too_many), 422, "backfill_too_large"
    )
    assert problem["errors"][0]["field"] == "max_runs"
    future = {**body, "end": (clock.now() + timedelta(minutes=1)).isoformat()}
    assert_problem(
        client.post(url("/jobs/http.sync/backfill"), json=future), 422, "invalid_backfill"
    )
    backwards = {**body, "start": body["end"], "end": body["start"]}
    assert_problem(
        client.post(url("/jobs/http.sync/backfill"), json=backwards), 422, "invalid_backfill"
    )
    assert_problem(client.post(url("/jobs/no.such/backfill"), json=body), 404, "job_not_found")
    assert_problem(
        client.post(url("/jobs/http.sync/backfill"), json={"start": body["start"]}),
        422,
        "validation_error",
    )
    assert len(service.list_audit(action="backfill").items) == 1
