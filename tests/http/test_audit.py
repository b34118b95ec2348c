"""The audit log over HTTP, through the real router: every write records the router's
actor and its source (``dashboard`` for the dashboard's writes, else ``api``); ``GET
/audit`` and ``GET /jobs/{key}/audit`` page by cursor and filter; a job's own
``retention`` is read and written with the job. Bad input: 422, nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.testing import FakeClock
from tests.http.conftest import ACTION, assert_problem, url

DASHBOARD = {"X-Taskmgr-Action": "dashboard"}
NEW_JOB = {"key": "audit.add", "func": "tests.http.jobs.add", "interval": 60}


def entries(client: TestClient, path: str = "/audit", **params: Any) -> list[dict[str, Any]]:
    response = client.get(url(path), params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_writes_record_the_actor_and_the_source(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    created = client.post(url("/jobs"), json={**NEW_JOB, "retention": 259200})
    assert created.status_code == 201, created.text
    assert created.json()["retention"] == 259200.0
    clock.advance(60)
    patched = client.patch(url("/jobs/audit.add"), json={"max_retries": 2, "retention": None})
    assert patched.json()["retention"] is None
    assert client.post(url("/jobs/audit.add/pause"), headers=DASHBOARD).status_code == 200
    assert client.post(url("/jobs/audit.add/resume"), headers=ACTION).status_code == 200
    run = client.post(url("/jobs/audit.add/trigger"), json={}, headers=DASHBOARD).json()
    assert client.post(url(f"/executions/{run['id']}/cancel"), headers=ACTION).status_code == 200
    assert client.delete(url("/jobs/audit.add"), headers=ACTION).status_code == 204
    cleanup = client.post(url("/maintenance/cleanup"), json={"retention_days": 30})
    assert cleanup.status_code == 200

    log = entries(client)[:8]  # the oldest: the creates of the jobs declared in code
    assert [(e["action"], e["source"], e["actor"]) for e in log] == [
        ("retention", "api", "alice"),
        ("delete", "api", "alice"),
        ("cancel", "api", "alice"),
        ("trigger", "dashboard", "alice"),
        ("resume", "api", "alice"),
        ("pause", "dashboard", "alice"),
        ("update", "api", "alice"),
        ("create", "api", "alice"),
    ]
    update = log[-2]
    assert update["details"] == {
        "changes": {
            "max_retries": {"before": 0, "after": 2},
            "retention": {"before": 259200.0, "after": None},
        }
    }
    assert update["at"] == "2026-03-02T08:01:00Z"
    assert log[3]["execution_id"] == run["id"] == log[2]["execution_id"]
    # the job's own log outlives it; it equals the global one filtered by job
    assert entries(client, "/jobs/audit.add/audit") == log[1:]
    assert entries(client, job="audit.add") == log[1:]
    assert entries(client, "/jobs/never.there/audit") == []


def test_the_log_pages_and_filters(client: TestClient, clock: FakeClock) -> None:
    for n in range(5):
        job = {**NEW_JOB, "key": f"audit.j{n}"}
        assert client.post(url("/jobs"), json=job).status_code == 201
        clock.advance(60)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(url("/audit"), params=params).json()
        seen += [e["job_key"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # newest first, down to the jobs declared in code, created at start
    assert seen == [*(f"audit.j{n}" for n in reversed(range(5))), "http.sync", "http.report"]
    window = entries(
        client, since="2026-03-02T08:01:00Z", until="2026-03-02T09:02:00+01:00", action="create"
    )
    assert [e["job_key"] for e in window] == ["audit.j2", "audit.j1"]
    assert entries(client, action=["pause", "delete"]) == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"action": "rename"}, "validation_error"),
        ({"since": "2026-03-02T08:00:00"}, "validation_error"),  # no offset
        ({"until": "1700000000"}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"cursor": "not a cursor!"}, "validation_error"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "invalid_input"),  # base64url, not ours
        ({"job": "no spaces"}, "validation_error"),
    ],
)
def test_bad_queries_are_422(client: TestClient, params: dict[str, Any], code: str) -> None:
    assert_problem(client.get(url("/audit"), params=params), 422, code)


def test_a_bad_retention_is_422_and_nothing_is_stored(
    client: TestClient, service: SchedulerService
) -> None:
    for retention, code in ((0, "invalid_option"), (-60, "invalid_option"), ("3d", None)):
        response = client.post(url("/jobs"), json={**NEW_JOB, "retention": retention})
        problem = assert_problem(response, 422, code)
        assert "retention" in response.text, problem
    assert client.get(url("/jobs/audit.add")).status_code == 404
    assert client.post(url("/jobs"), json=NEW_JOB).status_code == 201
    response = client.patch(url("/jobs/audit.add"), json={"retention": 0})
    assert_problem(response, 422, "invalid_option")
    job = client.get(url("/jobs/audit.add")).json()
    assert (job["retention"], job["version"]) == (None, 1)
    assert [e["action"] for e in entries(client, job="audit.add")] == ["create"]
