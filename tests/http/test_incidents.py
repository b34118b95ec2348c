"""Incidents and alert thresholds over HTTP, through the real router: a job created with
thresholds shows them, a bad threshold is a 422 naming it with nothing stored, the
incidents are listed (the open ones alone, one job's, page by page), bad parameters
are problem documents, and health counts the open incidents."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.testing import FakeClock
from tests.http.conftest import assert_problem, url

ALERTING = {
    "key": "http.watched",
    "func": "tests.http.jobs.add",
    "interval": 60,
    "alert_late_after": 30,
    "alert_failures": 3,
    "alert_max_runtime": 600,
    "alert_no_success_within": 86400,
}


def late_incidents(client: TestClient, service: SchedulerService, clock: FakeClock) -> None:
    """Three jobs whose slots nobody takes: three late incidents."""
    for n in range(3):
        body = {**ALERTING, "key": f"http.watched-{n}"}
        assert client.post(url("/jobs"), json=body).status_code == 201
    clock.advance(timedelta(minutes=2))
    service.check_alerts()


def test_a_job_created_with_thresholds_shows_them_and_they_change(client: TestClient) -> None:
    created = client.post(url("/jobs"), json=ALERTING)
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["alert_late_after"], job["alert_failures"]) == (30.0, 3)
    assert (job["alert_max_runtime"], job["alert_no_success_within"]) == (600.0, 86400.0)
    changed = client.patch(
        url("/jobs/http.watched"), json={"alert_failures": None, "alert_late_after": 90}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["alert_failures"], changed.json()["alert_late_after"]) == (None, 90.0)
    # a job without thresholds of its own has none: the service's apply
    assert client.get(url("/jobs/http.sync")).json()["alert_late_after"] is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("alert_late_after", 0),
        ("alert_failures", 0),
        ("alert_max_runtime", -1),
        ("alert_no_success_within", 0),
    ],
)
def test_a_threshold_that_is_not_positive_is_a_422_and_nothing_is_stored(
    client: TestClient, option: str, value: int
) -> None:
    body = assert_problem(client.post(url("/jobs"), json={**ALERTING, option: value}), 422)
    assert body["code"] == "invalid_alert"
    assert body["errors"][0]["field"] == option
    assert client.get(url("/jobs/http.watched")).status_code == 404
    patched = client.patch(url("/jobs/http.sync"), json={option: value})
    assert assert_problem(patched, 422)["errors"][0]["field"] == option
    assert client.get(url("/jobs/http.sync")).json()["version"] == 1


def test_incidents_are_listed_open_ones_alone_one_job_s_page_by_page(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    assert client.get(url("/incidents")).json() == {"items": [], "next_before": None}
    late_incidents(client, service, clock)
    page = client.get(url("/incidents"), params={"open": "true"}).json()
    assert [i["job_key"] for i in page["items"]] == [f"http.watched-{n}" for n in (2, 1, 0)]
    first = page["items"][0]
    assert first["rule"] == "late" and first["resolved_at"] is None
    assert first["details"]["kind"] == "slot" and first["notify_state"] is None
    assert first["message"].endswith("was not taken 30 s after its time")

    one = client.get(url("/incidents"), params={"job": "http.watched-1"}).json()["items"]
    assert [i["job_key"] for i in one] == ["http.watched-1"]
    older = client.get(url("/incidents"), params={"limit": 2}).json()
    assert len(older["items"]) == 2 and older["next_before"] == older["items"][1]["id"]
    rest = client.get(url("/incidents"), params={"before": older["next_before"]}).json()
    assert [i["job_key"] for i in rest["items"]] == ["http.watched-0"]
    assert rest["next_before"] is None

    assert client.get(url("/health")).json()["open_incidents"] == 3
    client.post(url("/jobs/http.watched-1/pause"), json={"reason": "known"})
    service.check_alerts()
    assert len(client.get(url("/incidents"), params={"open": True}).json()["items"]) == 2
    assert client.get(url("/health")).json()["open_incidents"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"before": 0},
        {"before": "x"},
        {"open": "maybe"},
        {"job": "not a key"},
        {"job": "x" * 200},
    ],
)
def test_bad_parameters_are_problem_documents(
    client: TestClient, params: dict[str, object]
) -> None:
    assert_problem(client.get(url("/incidents"), params=params), 422, "validation_error")


def test_the_dashboard_has_words_for_every_rule() -> None:
    from importlib import resources

    from taskmgr.core.alerts import AlertRule

    script = resources.files("taskmgr.fastapi").joinpath("static", "incidents.js").read_text()
    words = re.search(r"const RULE_WORDS = \{(.*?)\};", script, re.S)
    assert words is not None
    assert sorted(re.findall(r"(\w+):", words.group(1))) == sorted(r.value for r in AlertRule)
