"""The router over a real SQLite database: what memory storage cannot show (text
stored verbatim by the database, nothing written on refusal, JSON round trips)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.testing import FakeClock
from tests.http.conftest import ACTION, ADMIN, assert_problem, build_app, register_all, url


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[tuple[TestClient, SchedulerService]]:
    clock = FakeClock("2026-03-02T08:00:00+00:00")
    service = register_all(
        SchedulerService(f"sqlite:///{tmp_path}/t.db", clock=clock, background=False)
    )
    service.start()
    try:
        with TestClient(build_app(service), headers=ADMIN) as client:
            yield client, service
    finally:
        service.shutdown()


def test_crud_trigger_and_history_on_sqlite(
    sqlite_client: tuple[TestClient, SchedulerService],
) -> None:
    client, service = sqlite_client
    names = {"en": "x'; DROP TABLE taskmgr_jobs;--", "ja": "毎晩", "emoji": "🚀"}
    created = client.post(
        url("/jobs"),
        json={
            "key": "sql.add",
            "func": "tests.http.jobs.add",
            "cron": "*/5 * * * *",
            "names": names,
            "kwargs": {"a": 2, "b": 3},
        },
    )
    assert created.status_code == 201, created.text
    assert client.get(url("/jobs/sql.add")).json()["names"] == names
    assert client.patch(url("/jobs/sql.add"), json={"max_retries": 1}).json()["version"] == 2

    triggered = client.post(url("/jobs/sql.add/trigger"), json={"kwargs": {"a": 40}})
    assert triggered.status_code == 202
    [done] = service.run_due()
    execution = client.get(url(f"/executions/{done.id}")).json()
    assert execution["status"] == "success" and execution["result_summary"] == 43
    page = client.get(url("/jobs/sql.add/executions")).json()
    assert [e["id"] for e in page["items"]] == [done.id]
    assert len(client.get(url("/jobs")).json()["items"]) == 3  # the table is intact
    assert client.get(url("/health")).json()["schema_current"] is True
    assert client.delete(url("/jobs/sql.add"), headers=ACTION).status_code == 204
    assert client.get(url(f"/executions/{done.id}")).status_code == 200  # history kept


def test_refused_input_writes_nothing_on_sqlite(
    sqlite_client: tuple[TestClient, SchedulerService],
) -> None:
    client, service = sqlite_client
    before = service.list_jobs()
    bodies = [
        {"key": "sql.x", "func": "tests.http.jobs.add", "cron": "0 0 30 2 *"},
        {"key": "sql.x", "func": "os.system", "interval": 60},
        {"key": "sql.x", "func": "tests.http.jobs.add", "interval": 60, "kwargs": {"a": "\u0000"}},
        {"key": "http.sync", "func": "tests.http.jobs.add", "interval": 60},
    ]
    for body in bodies:
        assert client.post(url("/jobs"), json=body).status_code in (409, 422)
    assert_problem(client.post(url("/jobs/nope/trigger"), json={}), 404, "job_not_found")
    assert service.list_jobs() == before
    assert service.list_executions().items == []
