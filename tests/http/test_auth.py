"""Auth: the host's dependencies guard every route and the dashboard; the write
guard stops read-only principals; the router refuses to exist without auth, or
without being told who may write (a guard, every reader, or nobody)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import Depends
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.fastapi import create_router
from tests.http.conftest import (
    ACTION,
    OPERATIONS,
    PREFIX,
    READER,
    assert_problem,
    principal,
    require_writer,
    url,
)

DASHBOARD = ["/", "/app.js", "/app.css", "/icon.svg"]
SAMPLE_PARAMS = {
    "job_key": "http.sync",
    "execution_id": "abc-123",
    "queue": "reports",
    "name": "sunday-db",
}
WRITE_OPERATIONS = {
    "taskmgr_create_job",
    "taskmgr_update_job",
    "taskmgr_delete_job",
    "taskmgr_trigger_job",
    "taskmgr_defer_job",
    "taskmgr_cancel_execution",
    "taskmgr_pause_job",
    "taskmgr_resume_job",
    "taskmgr_cleanup_history",
    "taskmgr_pause_service",
    "taskmgr_resume_service",
    "taskmgr_pause_queue",
    "taskmgr_resume_queue",
    "taskmgr_backfill_job",
    "taskmgr_add_window",
    "taskmgr_delete_window",
}


def _operations(client: TestClient) -> list[tuple[str, str, str]]:
    # From the OpenAPI document, never from app.routes (a tree since FastAPI 0.137).
    spec = client.get("/openapi.json").json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            concrete = path.format(**SAMPLE_PARAMS)
            found.append((operation["operationId"], method.upper(), concrete))
    return found


def _body(operation_id: str) -> Any:
    return {
        "taskmgr_create_job": {"key": "auth.x", "func": "tests.http.jobs.add", "interval": 60},
        "taskmgr_update_job": {"max_retries": 1},
        "taskmgr_cleanup_history": {"retention_days": 0},
        "taskmgr_backfill_job": {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"},
    }.get(operation_id)


def test_every_route_and_the_dashboard_need_credentials(client: TestClient) -> None:
    operations = _operations(client)
    assert {operation_id for operation_id, _, _ in operations} == set(OPERATIONS)
    for operation_id, method, path in operations:
        response = client.request(
            method, path, json=_body(operation_id), headers={**ACTION, "Authorization": ""}
        )
        body = assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer", operation_id
        assert body["detail"] == "missing or invalid token"
    for path in DASHBOARD:
        response = client.get(url(path), headers={"Authorization": "Bearer wrong"})
        assert_problem(response, 401, "unauthorized")


def test_read_only_principal_reads_but_cannot_write(
    client: TestClient, service: SchedulerService
) -> None:
    before = service.list_jobs()
    executions_before = service.list_executions().items
    for operation_id, method, path in _operations(client):
        response = client.request(
            method, path, json=_body(operation_id), headers={**READER, **ACTION}
        )
        if operation_id in WRITE_OPERATIONS:
            assert_problem(response, 403, "forbidden")
        else:
            assert response.status_code in (200, 404), (operation_id, response.text)
    assert service.list_jobs() == before  # nothing was written
    assert service.list_executions().items == executions_before


def test_dashboard_is_served_to_readers(client: TestClient) -> None:
    for path in DASHBOARD:
        assert client.get(url(path), headers=READER).status_code == 200


def test_router_refuses_to_build_without_auth(service: SchedulerService) -> None:
    with pytest.raises(ValueError, match=r"auth dependency.*public=True"):
        create_router(service)


def test_public_router_needs_no_credentials(make_client: Callable[..., TestClient]) -> None:
    client = make_client(dependencies=[], writes="readers", actor=None, public=True)
    response = client.get(url("/jobs"), headers={"Authorization": ""})
    assert response.status_code == 200
    anonymous = {**ACTION, "Authorization": ""}
    assert client.post(url("/jobs/http.sync/trigger"), headers=anonymous).json()["actor"] is None


def test_the_prefix_is_the_hosts_choice(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get(url("/jobs")).status_code == 200
    assert client.get("/jobs").status_code == 404  # nothing outside the prefix
    assert PREFIX.startswith("/admin")


def test_dashboard_write_mode_off_hides_actions_but_not_the_api(
    make_client: Callable[..., TestClient],
) -> None:
    assert make_client().get(url("/session")).json() == {"can_write": True}
    read_only = make_client(dashboard_write=False)
    assert read_only.get(url("/session")).json() == {"can_write": False}
    # the JSON API's writes are governed by the write dependencies alone
    assert read_only.post(url("/jobs/http.sync/pause"), headers=ACTION).status_code == 200


def test_router_refuses_to_build_without_a_choice_for_writes(service: SchedulerService) -> None:
    for options in ({"dependencies": [Depends(principal)]}, {"public": True}):
        with pytest.raises(ValueError, match=r"write_dependencies=.*writes=\"readers\".*\"none\""):
            create_router(service, **options)
    with pytest.raises(ValueError, match="write_dependencies="):
        create_router(service, dependencies=[Depends(principal)], write_dependencies=[])
    with pytest.raises(ValueError, match="not both"):
        create_router(
            service,
            dependencies=[Depends(principal)],
            write_dependencies=[Depends(require_writer)],
            writes="readers",
        )
    with pytest.raises(ValueError, match="writes must be"):
        create_router(service, dependencies=[Depends(principal)], writes=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dashboard_write=True"):
        create_router(service, public=True, writes="none", dashboard_write=True)


def test_read_only_router_has_no_write_route(
    make_client: Callable[..., TestClient], service: SchedulerService
) -> None:
    client = make_client(writes="none")
    operations = {operation_id for operation_id, _, _ in _operations(client)}
    assert operations == set(OPERATIONS) - WRITE_OPERATIONS
    before = service.list_jobs()
    for method, path in [
        ("POST", "/jobs"),
        ("PATCH", "/jobs/http.sync"),
        ("DELETE", "/jobs/http.sync"),
        ("POST", "/jobs/http.sync/trigger"),
        ("POST", "/jobs/http.sync/defer"),
        ("POST", "/jobs/http.sync/pause"),
        ("POST", "/executions/abc-123/cancel"),
        ("POST", "/maintenance/cleanup"),
    ]:
        response = client.request(method, url(path), json={}, headers=ACTION)
        assert response.status_code in (404, 405), (method, path, response.status_code)
    assert service.list_jobs() == before
    assert client.get(url("/jobs/http.sync")).status_code == 200  # reads still work
    assert client.get(url("/")).status_code == 200
    assert client.get(url("/session")).json() == {"can_write": False}  # no buttons


def test_writes_readers_lets_every_reader_write(make_client: Callable[..., TestClient]) -> None:
    client = make_client(writes="readers")
    assert client.get(url("/session"), headers=READER).json() == {"can_write": True}
    run = client.post(url("/jobs/http.sync/trigger"), json={}, headers=READER)
    assert run.status_code == 202 and run.json()["actor"] == "bob"
    # the readers are still the dependencies' callers: no credentials, no write
    denied = client.post(url("/jobs/http.sync/pause"), headers={**ACTION, "Authorization": ""})
    assert_problem(denied, 401, "unauthorized")
