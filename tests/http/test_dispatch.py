"""A job's ``dispatch`` over HTTP: created, shown, changed and cleared like any option;
a dispatcher the service does not have is a 422 ``unknown_dispatcher`` and nothing is
stored."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.http.conftest import assert_problem, url

JOB = {"key": "api.add", "func": "tests.http.jobs.add", "interval": 300}


def test_dispatch_is_an_option_of_a_job(client: TestClient) -> None:
    created = client.post(url("/jobs"), json={**JOB, "dispatch": "inline"})
    assert created.status_code == 201, created.text
    assert created.json()["dispatch"] == "inline"

    cleared = client.patch(url("/jobs/api.add"), json={"dispatch": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["dispatch"] is None  # the service's default

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "dispatch" in schema["JobCreate"]["properties"]
    assert "dispatch" in schema["JobOut"]["required"]


def test_an_unknown_dispatcher_is_422_and_nothing_is_stored(client: TestClient) -> None:
    refused = client.post(url("/jobs"), json={**JOB, "dispatch": "gpu"})
    body = assert_problem(refused, 422, "unknown_dispatcher")
    assert "'gpu'" in body["detail"]
    assert_problem(client.get(url("/jobs/api.add")), 404, "job_not_found")

    assert client.post(url("/jobs"), json=JOB).status_code == 201
    assert_problem(client.patch(url("/jobs/api.add"), json={"dispatch": "gpu"}), 422)
    job = client.get(url("/jobs/api.add")).json()
    assert (job["dispatch"], job["version"]) == (None, 1)

    malformed = client.post(url("/jobs"), json={**JOB, "key": "api.x", "dispatch": "two words"})
    assert_problem(malformed, 422, "validation_error")
