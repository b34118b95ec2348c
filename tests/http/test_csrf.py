"""Cross-site request forgery: a write a browser may have sent for another page
(another site, or another port of this host) is refused with 403 before anything
runs; the dashboard's own requests and API clients' JSON requests go through."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from tests.http.conftest import ACTION, assert_problem, url

#: Starlette's TestClient talks to http://testserver.
OWN_ORIGIN = "http://testserver"
PAUSE = "/jobs/http.sync/pause"
TRIGGER = "/jobs/http.sync/trigger"


def _state(service: SchedulerService) -> tuple[Any, ...]:
    return tuple(service.list_jobs()), tuple(service.list_executions().items)


def test_form_encoded_post_is_refused(client: TestClient, service: SchedulerService) -> None:
    before = _state(service)
    for content_type, body in [
        ("application/x-www-form-urlencoded", b"force=true"),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("text/plain", b'{"force": true}'),
    ]:
        response = client.post(url(TRIGGER), content=body, headers={"Content-Type": content_type})
        problem = assert_problem(response, 403, "action_header_required")
        assert "X-Taskmgr-Action" in problem["detail"]
    assert _state(service) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", PAUSE),
        ("POST", TRIGGER),
        ("POST", "/jobs/http.sync/defer"),
        ("POST", "/executions/abc-123/cancel"),
        ("DELETE", "/jobs/http.sync"),
    ],
)
def test_bodiless_write_without_the_header_is_refused(
    client: TestClient, service: SchedulerService, method: str, path: str
) -> None:
    before = _state(service)
    assert_problem(client.request(method, url(path)), 403, "action_header_required")
    assert _state(service) == before


def test_bodiless_post_with_the_header_is_accepted(client: TestClient) -> None:
    paused = client.post(url(PAUSE), headers=ACTION)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    # any value will do, and so does the dashboard's
    resumed = client.post(url("/jobs/http.sync/resume"), headers={"x-taskmgr-action": "1"})
    assert resumed.status_code == 200


def test_json_post_is_accepted(client: TestClient) -> None:
    assert client.post(url(TRIGGER), json={}).status_code == 202
    for content_type in ("application/json", "application/merge-patch+json"):
        response = client.post(url(PAUSE), headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text  # a JSON type, no body


@pytest.mark.parametrize(
    "origin",
    [
        "http://testserver:8080",  # another port of this host: same site
        "https://testserver",  # another scheme
        "http://evil.example",
        "http://sub.testserver",
        "null",  # a sandboxed frame, a redirect across origins
        "not an origin",
    ],
)
def test_a_foreign_origin_is_refused(
    client: TestClient, service: SchedulerService, origin: str
) -> None:
    before = _state(service)
    # the header and the JSON type do not help: a permissive CORS setup may allow them
    for headers in ({"Origin": origin, **ACTION}, {"Origin": origin}):
        response = client.post(url(TRIGGER), json={}, headers=headers)
        problem = assert_problem(response, 403, "cross_site_request")
        assert origin not in problem["detail"]  # input is never echoed
    assert _state(service) == before


@pytest.mark.parametrize("origin", [OWN_ORIGIN, "http://TestServer", "http://testserver:80"])
def test_the_own_origin_is_accepted(client: TestClient, origin: str) -> None:
    assert client.post(url(PAUSE), headers={"Origin": origin, **ACTION}).status_code == 200


def test_the_origin_includes_the_port(client: TestClient) -> None:
    own = {"Host": "127.0.0.1:8765", **ACTION}
    response = client.post(url(PAUSE), headers={**own, "Origin": "http://127.0.0.1:8765"})
    assert response.status_code == 200
    other = {**own, "Origin": "http://127.0.0.1:9000"}
    assert_problem(client.post(url(PAUSE), headers=other), 403, "cross_site_request")


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Same-Site"])
def test_sec_fetch_site_of_another_site_or_port_is_refused(
    client: TestClient, service: SchedulerService, site: str
) -> None:
    before = _state(service)
    response = client.post(url(TRIGGER), json={}, headers={"Sec-Fetch-Site": site, **ACTION})
    assert_problem(response, 403, "cross_site_request")
    assert _state(service) == before


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_sec_fetch_site_of_this_origin_is_accepted(client: TestClient, site: str) -> None:
    headers = {"Sec-Fetch-Site": site, "Origin": OWN_ORIGIN, **ACTION}
    assert client.post(url(PAUSE), headers=headers).status_code == 200


def test_reads_are_unaffected(client: TestClient) -> None:
    foreign = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.get(url("/jobs"), headers=foreign).status_code == 200
    assert client.get(url("/"), headers=foreign).status_code == 200  # the dashboard
    assert client.get(url("/session"), headers=foreign).json() == {"can_write": True}


def test_refused_before_the_hosts_dependencies(client: TestClient) -> None:
    # no credentials: the cross-site refusal comes first, nothing of the host runs
    response = client.post(url(PAUSE), headers={"Authorization": ""})
    assert_problem(response, 403, "action_header_required")
