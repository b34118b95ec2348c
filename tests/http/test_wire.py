"""The list routes serialize the service's jobs and executions without building response
models (:mod:`taskmgr.fastapi.wire`): their bodies must be, byte for byte, what the
models make of the same objects, so the models stay the contract."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from taskmgr import SchedulerService
from taskmgr.fastapi import create_router, wire
from taskmgr.fastapi.locations import url_of
from taskmgr.fastapi.schemas import ExecutionOut, ExecutionPageOut, JobOut, JobPage, JobRunsOut
from taskmgr.testing import FakeClock

from . import jobs
from .conftest import url


def _history(service: SchedulerService, clock: FakeClock) -> None:
    """Jobs of every trigger kind, and runs that succeeded, failed, retry and wait."""
    service.create_job(
        "wire.once", jobs.add, at=clock.now() + timedelta(hours=1), kwargs={"a": 5}, max_retries=2
    )
    service.create_job("wire.every", jobs.boom, interval=90.5, max_retries=1, timeout=2.5)
    service.create_job("wire.manual", jobs.add, kwargs={"b": 7})
    service.trigger_job("http.sync")
    service.trigger_job("wire.every", kwargs={})
    service.trigger_job("http.report", kwargs={"recipients": ["ops@example.com"]})
    for _ in range(3):
        service.run_due()
        clock.advance(seconds=2)
    service.run_due()
    service.trigger_job("wire.manual", kwargs={"a": 1})  # pending


def test_list_bodies_are_what_the_response_models_make(
    service: SchedulerService, clock: FakeClock
) -> None:
    _history(service, clock)
    found = service.list_jobs()
    assert {job.trigger.type for job in found} == {"cron", "interval", "date", "manual"}
    expected = JobPage(items=[JobOut.of(job) for job in found], next_cursor="bmV4dA")
    assert wire.job_page(found, "bmV4dA").body == expected.model_dump_json().encode()

    page = service.list_executions(limit=100)
    statuses = {e.status.value for e in page.items}
    assert {"success", "failed", "pending"} <= statuses
    assert any(e.traceback for e in page.items) and any(e.result_summary for e in page.items)
    made = ExecutionPageOut(items=[ExecutionOut.of(e) for e in page.items], next_cursor=None)
    assert wire.execution_page(page.items, None).body == made.model_dump_json().encode()

    recent = service.recent_executions(["wire.every", "http.sync", "nobody"], 5)
    runs = [
        JobRunsOut(job_key=key, items=[ExecutionOut.of(e) for e in items])
        for key, items in recent.items()
    ]
    assert wire.job_runs(recent).body == TypeAdapter(list[JobRunsOut]).dump_json(runs)


def test_the_fields_of_a_response_model_are_those_of_its_object() -> None:
    """A field added to a job or an execution must be added to its response model (or
    left out here on purpose): the bodies carry the model's fields only."""
    from taskmgr.core.models import Execution, Job

    assert set(JobOut.model_fields) - {"schedule"} == set(Job.model_fields) - {"fingerprint"}
    assert set(ExecutionOut.model_fields) - {"lateness_ms"} == set(Execution.model_fields) - {
        "trace_context"
    }


def test_a_page_of_the_largest_size_still_tells_whether_another_follows(
    client: TestClient, service: SchedulerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page reads one row more than it shows, in the same query; at the largest page
    size (which the service caps) that row is read by a second query."""
    monkeypatch.setattr("taskmgr.fastapi.job_routes.MAX_PAGE", 2)
    service.create_job("wire.third", jobs.add)
    first = client.get(url("/jobs"), params={"limit": 5}).json()
    assert [job["key"] for job in first["items"]] == ["http.report", "http.sync"]
    assert first["next_cursor"]
    last = client.get(url("/jobs"), params={"cursor": first["next_cursor"]}).json()
    assert [job["key"] for job in last["items"]] == ["wire.third"]
    assert last["next_cursor"] is None


def test_a_run_is_located_where_url_for_says(service: SchedulerService) -> None:
    """The ``Location`` of a run asked for is found once per router (locations.url_of),
    and is still the URL of ``url_for``: under each prefix and proxy root path."""
    for prefix, root in (("/a", ""), ("/b/c", "/proxy")):
        app = FastAPI()
        app.include_router(create_router(service, public=True, writes="readers"), prefix=prefix)

        @app.get("/where/{execution_id}")
        def where(execution_id: str, request: Request) -> list[str]:
            made = url_of(request, "taskmgr_get_execution", "execution_id", execution_id)
            found = request.url_for("taskmgr_get_execution", execution_id=execution_id)
            return [made, str(found)]

        with TestClient(app, root_path=root) as client:
            response = client.post(f"{root}{prefix}/jobs/http.sync/trigger", json={"force": True})
            run = response.json()["id"]
            assert (
                response.headers["location"] == f"http://testserver{root}{prefix}/executions/{run}"
            )
            hosts = ({}, {"host": "example.org:8080"}, {"host": "[::1]"}, {"host": "example.org"})
            for value, host in [(v, h) for v in (run, "x", "a-b-c") for h in hosts]:
                answer = client.get(f"{root}/where/{value}", headers=host)
                assert answer.status_code == 200, (prefix, answer.text)
                made, found = answer.json()
                assert made == found
