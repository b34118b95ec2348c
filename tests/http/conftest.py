"""Fixtures of the HTTP tests: a service on memory storage with a fake clock, and
throwaway FastAPI apps that include taskmgr's router under a prefix, the way a
host does, called over HTTP with Starlette's TestClient (httpx2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.fastapi import create_router
from taskmgr.testing import FakeClock, make_test_service
from tests.http import jobs

PREFIX = "/admin/jobs"
#: Every operation of the router, by its stable operationId.
OPERATIONS = [
    "taskmgr_list_jobs",
    "taskmgr_create_job",
    "taskmgr_get_job",
    "taskmgr_update_job",
    "taskmgr_delete_job",
    "taskmgr_trigger_job",
    "taskmgr_defer_job",
    "taskmgr_pause_job",
    "taskmgr_resume_job",
    "taskmgr_preview_job",
    "taskmgr_list_job_executions",
    "taskmgr_list_executions",
    "taskmgr_list_recent_executions",
    "taskmgr_list_failures",
    "taskmgr_get_execution",
    "taskmgr_cancel_execution",
    "taskmgr_list_queues",
    "taskmgr_list_audit",
    "taskmgr_list_job_audit",
    "taskmgr_list_incidents",
    "taskmgr_list_instances",
    "taskmgr_get_health",
    "taskmgr_cleanup_history",
    "taskmgr_get_session",
    "taskmgr_list_pauses",
    "taskmgr_pause_service",
    "taskmgr_resume_service",
    "taskmgr_pause_queue",
    "taskmgr_resume_queue",
    "taskmgr_backfill_job",
    "taskmgr_list_windows",
    "taskmgr_add_window",
    "taskmgr_delete_window",
]

ADMIN = {"Authorization": "Bearer admin-token"}
READER = {"Authorization": "Bearer reader-token"}
#: What a client sends on a write without a JSON body (the dashboard sends it too).
ACTION = {"X-Taskmgr-Action": "test"}


@dataclass(frozen=True)
class Principal:
    name: str
    can_write: bool


_TOKENS = {"admin-token": Principal("alice", True), "reader-token": Principal("bob", False)}


def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
    scheme, _, token = (authorization or "").partition(" ")
    found = _TOKENS.get(token) if scheme == "Bearer" else None
    if found is None:
        raise HTTPException(401, "missing or invalid token", headers={"WWW-Authenticate": "Bearer"})
    return found


def require_writer(user: Annotated[Principal, Depends(principal)]) -> Principal:
    if not user.can_write:
        raise HTTPException(403, "read-only user")
    return user


def actor_name(user: Annotated[Principal, Depends(principal)]) -> str:
    return user.name


def register_all(service: SchedulerService) -> SchedulerService:
    service.register(jobs)
    for func in (jobs.add, jobs.boom, jobs.blocking):
        service.register(func)
    return service


def build_app(service: SchedulerService, **options: Any) -> FastAPI:
    """A host app with taskmgr's router under ``PREFIX`` (auth unless overridden)."""
    options.setdefault("dependencies", [Depends(principal)])
    if "writes" not in options:
        options.setdefault("write_dependencies", [Depends(require_writer)])
    options.setdefault("actor", actor_name)
    app = FastAPI()
    app.include_router(create_router(service, **options), prefix=PREFIX)
    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock("2026-03-02T08:00:00+00:00")


@pytest.fixture
def service(clock: FakeClock) -> Iterator[SchedulerService]:
    service = register_all(make_test_service(clock=clock))
    service.start()
    yield service
    service.shutdown()


@pytest.fixture
def make_client(service: SchedulerService) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        client = TestClient(build_app(service, **options), headers=ADMIN)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def url(path: str) -> str:
    return PREFIX + path


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:taskmgr:problem:{body['code']}"
    assert body["title"]
    if code is not None:
        assert body["code"] == code, body
    return body
