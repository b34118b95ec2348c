"""Maintenance windows and exclusion dates over HTTP, through the real router: the
window documents, each refusal as a problem document with nothing stored, and who is
recorded for each change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.testing import FakeClock
from tests.http.conftest import ACTION, READER, assert_problem, url

# the clock starts on Monday 2 March 2026 at 08:00 UTC
WEEKLY = {"name": "sunday-db", "weekly": "sun 02:00-04:00", "timezone": "Europe/Berlin"}


def test_a_window_is_added_listed_and_deleted(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    response = client.post(url("/windows"), json={**WEEKLY, "reason": "database"})
    assert response.status_code == 201, response.text
    added = response.json()
    assert added == {
        "name": "sunday-db",
        "job_key": None,
        "action": "skip",
        "start": None,
        "end": None,
        "cron": "0 2 * * sun",
        "duration": 7200.0,
        "timezone": "Europe/Berlin",
        "reason": "database",
        "created_by": "alice",
        "created_at": "2026-03-02T08:00:00Z",
        "open": False,
        "open_until": None,
        "next_start": "2026-03-08T01:00:00Z",  # 02:00 CET
    }
    once = {
        "name": "deploy",
        "job_key": "http.sync",
        "action": "defer",
        "start": "2026-03-02T07:30:00Z",
        "end": "2026-03-02T10:00:00+01:00",
    }
    response = client.post(url("/windows"), json=once)
    assert response.status_code == 201, response.text
    assert (response.json()["open"], response.json()["open_until"]) == (
        True,
        "2026-03-02T09:00:00Z",
    )

    listed = client.get(url("/windows")).json()["items"]
    assert [w["name"] for w in listed] == ["deploy", "sunday-db"]
    clock.set("2026-03-02T07:59:00+00:00")  # the one-off window is open now
    assert [w["name"] for w in client.get(url("/windows?open=true")).json()["items"]] == ["deploy"]

    # the dashboard's writes say so: the entry's source is "dashboard"
    deleted = client.delete(url("/windows/deploy"), headers={"X-Taskmgr-Action": "dashboard"})
    assert deleted.status_code == 204, deleted.text
    assert_problem(client.delete(url("/windows/deploy"), headers=ACTION), 404, "window_not_found")
    entries = client.get(url("/audit?action=add_window&action=delete_window")).json()["items"]
    assert [(e["action"], e["actor"], e["source"], e["job_key"]) for e in entries] == [
        ("delete_window", "alice", "dashboard", "http.sync"),
        ("add_window", "alice", "api", "http.sync"),
        ("add_window", "alice", "api", None),
    ]
    assert entries[0]["details"]["window"]["name"] == "deploy"
    assert [w.name for w in service.list_windows()] == ["sunday-db"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"name": "w", "start": "2026-03-03T10:00:00Z", "end": "2026-03-03T09:00:00Z"},
         422, "invalid_window", "end"),
        ({"name": "w", "start": "2026-03-01T10:00:00Z", "end": "2026-03-02T07:00:00Z"},
         422, "window_in_past", "end"),
        ({"name": "w", "cron": "0 2 * * *", "duration": 60, "timezone": "Mars/Base"},
         422, "invalid_timezone", "timezone"),
        ({"name": "w", "cron": "0 2 * * *", "duration": 0}, 422, "invalid_window", "duration"),
        ({"name": "w", "cron": "0 2 * * *", "duration": 90000}, 422, "invalid_window",
         "duration"),
        ({"name": "w", "cron": "0 2 * *", "duration": 60}, 422, "invalid_cron", "cron"),
        ({"name": "w", "cron": "0 2 * * *"}, 422, "invalid_window", "duration"),
        ({"name": "w"}, 422, "invalid_window", "start"),
        ({"name": "w", "weekly": "sunday at two"}, 422, "invalid_window", "weekly"),
        ({"name": "w", "weekly": "sun 02:00-04:00", "cron": "0 2 * * *"}, 422,
         "invalid_window", "weekly"),
        ({"name": "w", "job_key": "ghost", "cron": "0 2 * * *", "duration": 60}, 422,
         "window_job_not_found", "job_key"),
        ({"name": "w", "cron": "30 1 * * SUN", "duration": 3600, "timezone": "UTC"}, 422,
         "window_overlap", "name"),
        ({**WEEKLY, "cron": None, "weekly": "mon 02:00-03:00"}, 409, "window_exists", None),
        ({"name": "w", "cron": "0 2 * * *", "duration": 60, "action": "pause"}, 422,
         "validation_error", "action"),
        ({"name": "no spaces", "cron": "0 2 * * *", "duration": 60}, 422, "validation_error",
         "name"),
        ({"name": "w", "start": "2026-03-03T10:00:00", "end": "2026-03-03T11:00:00Z"}, 422,
         "validation_error", "start"),
    ],
)  # fmt: skip
def test_each_bad_window_is_refused_with_its_problem_and_nothing_is_stored(
    client: TestClient,
    service: SchedulerService,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    assert client.post(url("/windows"), json=WEEKLY).status_code == 201
    problem = assert_problem(client.post(url("/windows"), json=body), status, code)
    if field is not None:
        assert problem["errors"][0]["field"] == field
    assert [w.name for w in service.list_windows()] == ["sunday-db"]
    assert len(service.list_audit(action="add_window").items) == 1


def test_a_reader_may_list_windows_but_not_change_them(client: TestClient) -> None:
    client.post(url("/windows"), json=WEEKLY)
    assert client.get(url("/windows"), headers=READER).status_code == 200
    assert_problem(client.post(url("/windows"), json={**WEEKLY, "name": "x"}, headers=READER), 403)
    assert_problem(client.delete(url("/windows/sunday-db"), headers={**READER, **ACTION}), 403)


def test_a_job_s_exclusion_dates_are_set_shown_and_refused_when_bad(
    client: TestClient, service: SchedulerService
) -> None:
    response = client.patch(
        url("/jobs/http.sync"), json={"exclude_dates": ["2026-12-25", "2026-01-01"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["exclude_dates"] == ["2026-01-01", "2026-12-25"]
    problem = assert_problem(
        client.patch(url("/jobs/http.sync"), json={"exclude_dates": ["2026-02-30"]}),
        422,
        "invalid_option",
    )
    assert problem["errors"][0]["field"] == "exclude_dates[0]"
    assert_problem(
        client.patch(url("/jobs/http.sync"), json={"exclude_dates": ["tomorrow"]}),
        422,
        "validation_error",
    )
    assert client.get(url("/jobs/http.sync")).json()["exclude_dates"] == [
        "2026-01-01",
        "2026-12-25",
    ]
    cleared = client.patch(url("/jobs/http.sync"), json={"exclude_dates": None})
    assert cleared.json()["exclude_dates"] == []
    [entry, first] = service.list_audit(job_key="http.sync", action="update").items[:2]
    assert first.details["changes"]["exclude_dates"]["after"] == ["2026-01-01", "2026-12-25"]
    assert (entry.actor, entry.source.value) == ("alice", "api")
