"""The router's routes are ``async def`` over an ``AsyncSchedulerService``: the service
calls run in worker threads, the host's sync dependencies still run in FastAPI's
thread pool, async ones on the loop, and the lifespan starts the service on behalf
of the app's loop (``async def`` jobs run there)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from starlette.testclient import TestClient

from taskmgr import AsyncSchedulerService, ExecutionStatus, SchedulerService, task
from taskmgr.fastapi import create_router, lifespan
from taskmgr.testing import make_test_service
from tests.http.conftest import ACTION, ADMIN, PREFIX, assert_problem, build_app, register_all, url

#: The event loops ``on_the_loop`` ran on.
loops: list[asyncio.AbstractEventLoop] = []


@task("http.on_the_loop")
async def on_the_loop() -> None:
    loops.append(asyncio.get_running_loop())


def test_every_route_is_a_coroutine_function(service: SchedulerService) -> None:
    router = create_router(service, public=True, writes="readers")
    endpoints = {route.name: route.endpoint for route in router.routes}
    assert len(endpoints) > 20
    blocking = sorted(name for name, e in endpoints.items() if not inspect.iscoroutinefunction(e))
    assert blocking == []


def test_the_router_takes_an_async_service_too(service: SchedulerService) -> None:
    from_sync = TestClient(build_app(service), headers=ADMIN)
    from_async = TestClient(build_app(AsyncSchedulerService(service)), headers=ADMIN)
    with from_sync, from_async:
        assert from_async.get("/openapi.json").json() == from_sync.get("/openapi.json").json()
        created = from_async.post(
            url("/jobs"), json={"key": "aio.add", "func": "tests.http.jobs.add", "interval": 60}
        )
        assert created.status_code == 201, created.text
        assert from_sync.get(url("/jobs/aio.add")).json()["func"] == "tests.http.jobs.add"
        assert_problem(from_async.get(url("/jobs/aio.nope")), 404, "job_not_found")


def test_the_router_refuses_what_is_not_a_service() -> None:
    with pytest.raises(TypeError, match="SchedulerService"):
        create_router(object(), public=True, writes="readers")


def test_sync_host_dependencies_run_in_the_thread_pool_and_storage_off_the_loop(
    service: SchedulerService,
) -> None:
    threads: dict[str, int] = {}

    async def on_loop() -> None:
        threads["loop"] = threading.get_ident()

    def sync_user(authorization: Annotated[str | None, Header()] = None) -> str:
        threads["dependency"] = threading.get_ident()
        if authorization != ADMIN["Authorization"]:
            raise HTTPException(401, "no", headers={"WWW-Authenticate": "Bearer"})
        return "carol"

    real = service.storage.list_jobs

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads["storage"] = threading.get_ident()
        return real(*args, **kwargs)

    service.storage.list_jobs = recorded  # type: ignore[method-assign]
    app = build_app(service, dependencies=[Depends(on_loop), Depends(sync_user)], actor=sync_user)
    with TestClient(app) as client:
        assert_problem(client.get(url("/jobs")), 401, "unauthorized")
        assert client.get(url("/jobs"), headers=ADMIN).status_code == 200
        run = client.post(url("/jobs/http.sync/trigger"), headers={**ADMIN, **ACTION})
        assert run.status_code == 202 and run.json()["actor"] == "carol"
    assert threads["dependency"] != threads["loop"]
    assert threads["storage"] != threads["loop"]


def test_async_host_dependencies_work_as_well(service: SchedulerService) -> None:
    async def async_user(authorization: Annotated[str | None, Header()] = None) -> str:
        if authorization != ADMIN["Authorization"]:
            raise HTTPException(401, "no", headers={"WWW-Authenticate": "Bearer"})
        return "dave"

    async def read_only() -> None:
        raise HTTPException(403, "read-only")

    app = build_app(service, dependencies=[Depends(async_user)], actor=async_user)
    with TestClient(app, headers=ADMIN) as client:
        assert_problem(client.get(url("/jobs"), headers={"Authorization": ""}), 401)
        run = client.post(url("/jobs/http.sync/defer"), json={})
        assert run.status_code == 202 and run.json()["actor"] == "dave"
    guarded = build_app(
        service, dependencies=[Depends(async_user)], write_dependencies=[Depends(read_only)]
    )
    with TestClient(guarded, headers=ADMIN) as client:
        assert_problem(client.post(url("/jobs/http.sync/pause"), headers=ACTION), 403, "forbidden")
        assert client.get(url("/session")).json() == {"can_write": False}


@pytest.mark.parametrize("wrap", [False, True], ids=["sync service", "async service"])
def test_the_lifespan_runs_async_jobs_on_the_apps_loop(wrap: bool) -> None:
    service = register_all(make_test_service([on_the_loop]))
    given: Any = AsyncSchedulerService(service) if wrap else service
    app = FastAPI(lifespan=lifespan(given))

    @app.get("/loop")
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    app.include_router(create_router(given, public=True, writes="readers"), prefix=PREFIX)
    loops.clear()
    with TestClient(app) as client:
        assert service.running
        app_loop = client.get("/loop").json()
        deferred = client.post(url("/jobs/http.on_the_loop/defer"), json={})
        assert deferred.status_code == 202, deferred.text
        [run] = service.run_due()  # waits here while the job runs on the app's loop
        assert run.status is ExecutionStatus.SUCCESS
    assert not service.running
    assert [id(loop) for loop in loops] == [app_loop]
