"""Every endpoint of the router, over HTTP, through a host app's prefix."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.testing import FakeClock
from tests.http import jobs
from tests.http.conftest import ACTION, ADMIN, OPERATIONS, PREFIX, assert_problem, url


def _create(client: TestClient, **body: object) -> dict[str, object]:
    payload = {"key": "api.add", "func": "tests.http.jobs.add", "interval": 300, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    response = client.post(url("/jobs"), json=payload)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_list_jobs_shows_code_jobs_with_schedule_in_words(client: TestClient) -> None:
    page = client.get(url("/jobs")).json()

    by_key = {job["key"]: job for job in page["items"]}
    assert list(by_key) == ["http.report", "http.sync"]  # ordered by key
    report = by_key["http.report"]
    assert report["trigger"] == {
        "type": "cron",
        "expression": "30 2 * * *",
        "timezone": "Europe/Berlin",
    }
    assert report["schedule"] == "every day at 02:30 (Europe/Berlin)"
    assert report["names"]["de"] == "Nächtlicher Bericht"
    assert report["next_run_at"] == "2026-03-03T01:30:00Z"
    assert by_key["http.sync"]["schedule"] == "every minute"
    assert page["next_cursor"] is None


def test_list_jobs_pages_with_a_cursor_and_filters(client: TestClient) -> None:
    for index in range(5):
        _create(client, key=f"api.page{index}")

    first = client.get(url("/jobs"), params={"limit": 3}).json()
    second = client.get(url("/jobs"), params={"limit": 3, "cursor": first["next_cursor"]}).json()
    third = client.get(url("/jobs"), params={"limit": 3, "cursor": second["next_cursor"]}).json()

    keys = [job["key"] for page in (first, second, third) for job in page["items"]]
    assert keys == sorted(keys) and len(keys) == len(set(keys)) == 7
    assert third["next_cursor"] is None
    client.post(url("/jobs/api.page1/pause"), headers=ACTION)
    paused = client.get(url("/jobs"), params={"state": "paused"}).json()["items"]
    assert [job["key"] for job in paused] == ["api.page1"]
    found = client.get(url("/jobs"), params={"q": "NIGHTLY"}).json()["items"]
    assert [job["key"] for job in found] == ["http.report"]  # matches the display name


def test_create_get_update_delete(client: TestClient, service: SchedulerService) -> None:
    created = client.post(
        url("/jobs"),
        json={
            "key": "api.add",
            "func": "tests.http.jobs.add",
            "cron": "0 9 * * MON-FRI",
            "timezone": "Europe/Berlin",
            "kwargs": {"a": 5},
            "max_retries": 2,
            "retry_backoff": {"base": 2, "max": 60},
            "names": {"en": "Adder"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"{PREFIX}/jobs/api.add")
    job = created.json()
    assert job["source"] == "api" and job["state"] == "active" and job["version"] == 1
    assert job["schedule"] == "weekdays at 09:00 (Europe/Berlin)"
    assert job["retry_backoff"] == {"base": 2.0, "max": 60.0, "jitter": 0.5}

    fetched = client.get(url("/jobs/api.add"))
    assert fetched.json() == job and fetched.headers["etag"] == '"1"'

    patched = client.patch(url("/jobs/api.add"), json={"interval": 120, "kwargs": {"a": 1, "b": 1}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["trigger"]["type"] == "interval"
    assert patched.json()["trigger"]["every"] == 120
    assert patched.json()["version"] == 2 and patched.headers["etag"] == '"2"'
    assert service.get_job("api.add").kwargs == {"a": 1, "b": 1}

    unchanged = client.patch(url("/jobs/api.add"), json={})
    assert unchanged.json()["version"] == 2

    assert client.delete(url("/jobs/api.add"), headers=ACTION).status_code == 204
    assert_problem(client.get(url("/jobs/api.add")), 404, "job_not_found")


def test_patch_with_if_match_refuses_a_stale_version(client: TestClient) -> None:
    _create(client)
    ok = client.patch(url("/jobs/api.add"), json={"max_retries": 1}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    stale = client.patch(url("/jobs/api.add"), json={"max_retries": 2}, headers={"If-Match": '"1"'})
    assert_problem(stale, 412, "version_conflict")


def test_create_paused(client: TestClient) -> None:
    assert _create(client, enabled=False)["state"] == "paused"


def test_create_one_shot(client: TestClient) -> None:
    job = _create(client, interval=None, at="2026-03-02T10:00:00+02:00")
    assert job["trigger"] == {"type": "date", "at": "2026-03-02T08:00:00Z"}
    assert job["schedule"] == "once at 2026-03-02T08:00:00Z"


def test_create_without_a_schedule_makes_a_task(client: TestClient) -> None:
    job = _create(client, interval=None)
    assert job["trigger"] == {"type": "manual"}
    assert job["schedule"] == "when deferred (no schedule)"
    assert job["next_run_at"] is None


def test_defer_a_task_with_arguments_then_poll_it(
    client: TestClient, service: SchedulerService
) -> None:
    _create(client, interval=None)
    response = client.post(url("/jobs/api.add/defer"), json={"kwargs": {"a": 40}})
    assert response.status_code == 202, response.text
    execution = response.json()
    assert execution["trigger"] == "deferred" and execution["status"] == "pending"
    assert execution["actor"] == "alice" and execution["kwargs"] == {"a": 40}
    assert response.headers["location"].endswith(f"{PREFIX}/executions/{execution['id']}")
    service.run_due()
    fetched = client.get(response.headers["location"]).json()
    assert fetched["status"] == "success" and fetched["result_summary"] == 42
    assert client.post(url("/jobs/api.add/defer"), headers=ACTION).status_code == 202  # defaults
    later = client.post(
        url("/jobs/api.add/defer"), json={"run_at": "2030-01-01T00:00:00+01:00", "delay": None}
    )
    assert later.status_code == 202, later.text
    assert later.json()["due_at"] == "2029-12-31T23:00:00Z"
    delayed = client.post(url("/jobs/api.add/defer"), json={"delay": 30})
    assert delayed.json()["due_at"] > execution["due_at"]


def test_defer_with_an_idempotency_key_makes_one_run(client: TestClient) -> None:
    _create(client, interval=None)
    headers = {"Idempotency-Key": "order-7"}
    first = client.post(url("/jobs/api.add/defer"), json={"kwargs": {"a": 1}}, headers=headers)
    again = client.post(url("/jobs/api.add/defer"), json={"kwargs": {"a": 1}}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["idempotency_key"] == "order-7"
    too_long = client.post(
        url("/jobs/api.add/defer"), headers={**ACTION, "Idempotency-Key": "k" * 256}
    )
    assert too_long.status_code == 422
    assert len(client.get(url("/jobs/api.add/executions")).json()["items"]) == 1


def test_defer_refuses_bad_input_and_writes_nothing(client: TestClient) -> None:
    _create(client, interval=None)
    cases = [
        ({"kwargs": {"c": 1}}, "invalid_kwargs"),
        ({"kwargs": {"delay": 1}}, "invalid_kwargs"),
        ({"kwargs": {"a": 1}, "run_at": "2030-01-01T00:00:00"}, "validation_error"),
        ({"kwargs": {"a": 1}, "delay": -5}, "invalid_input"),
        ({"kwargs": {"a": "1"}, "extra": True}, "validation_error"),
    ]
    for body, kind in cases:
        assert_problem(client.post(url("/jobs/api.add/defer"), json=body), 422, kind)
    assert_problem(client.post(url("/jobs/api.nope/defer"), json={}), 404, "job_not_found")
    assert client.get(url("/jobs/api.add/executions")).json()["items"] == []


def test_cancel_a_pending_execution(client: TestClient) -> None:
    _create(client, interval=None)
    later = client.post(url("/jobs/api.add/defer"), json={"delay": 600}).json()
    cancelled = client.post(url(f"/executions/{later['id']}/cancel"), headers=ACTION)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error_message"] == "cancelled by alice"
    assert_problem(
        client.post(url(f"/executions/{later['id']}/cancel"), headers=ACTION), 409, "conflict"
    )
    assert_problem(
        client.post(url("/executions/nope/cancel"), headers=ACTION), 404, "execution_not_found"
    )


def test_queues_count_waiting_and_running_runs_per_job(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    assert client.get(url("/queues")).json() == []
    block = _create(client, key="api.block", func="tests.http.jobs.blocking", interval=None)
    add = _create(client, interval=None)
    jobs.started.clear()
    jobs.release.clear()
    running = client.post(url("/jobs/api.block/defer"), headers=ACTION).json()
    try:
        service.run_due(wait=False)
        assert jobs.started.wait(10)
        for body in ({"kwargs": {"a": 1}}, {"kwargs": {"a": 2}}, {"delay": 600}):
            assert client.post(url("/jobs/api.add/defer"), json=body).status_code == 202
        clock.advance(seconds=90)
        assert client.get(url("/queues")).json() == [
            {
                "job_id": add["id"],
                "job_key": "api.add",
                "pending": 3,
                "due": 2,  # the delayed one is not due yet
                "running": 0,
                "oldest_due_at": "2026-03-02T08:00:00Z",
                "oldest_due_age_seconds": 90.0,
            },
            {
                "job_id": block["id"],
                "job_key": "api.block",
                "pending": 0,
                "due": 0,
                "running": 1,
                "oldest_due_at": None,
                "oldest_due_age_seconds": None,
            },
        ]
    finally:
        jobs.release.set()
    assert service.wait(running["id"]).status.value == "success"
    assert [q["job_key"] for q in client.get(url("/queues")).json()] == ["api.add"]


def test_trigger_runs_the_job_and_records_the_actor(
    client: TestClient, service: SchedulerService
) -> None:
    response = client.post(url("/jobs/http.sync/trigger"), json={})

    assert response.status_code == 202, response.text
    execution = response.json()
    assert execution["trigger"] == "manual" and execution["status"] == "pending"
    assert execution["actor"] == "alice"
    assert response.headers["location"].endswith(f"{PREFIX}/executions/{execution['id']}")
    [done] = service.run_due()
    assert done.id == execution["id"]
    fetched = client.get(url(f"/executions/{execution['id']}")).json()
    assert fetched["status"] == "success" and fetched["result_summary"] == "synced"
    assert fetched["lateness_ms"] is not None


def test_trigger_with_kwargs_and_without_a_body(
    client: TestClient, service: SchedulerService
) -> None:
    _create(client)
    with_kwargs = client.post(url("/jobs/api.add/trigger"), json={"kwargs": {"a": 40}})
    assert with_kwargs.status_code == 202
    assert with_kwargs.json()["kwargs"] == {"a": 40}
    service.run_due()
    no_body = client.post(url("/jobs/api.add/trigger"), headers=ACTION)
    assert no_body.status_code == 202, no_body.text
    [done] = service.run_due()
    assert client.get(url(f"/executions/{with_kwargs.json()['id']}")).json()["result_summary"] == 42
    assert done.result_summary == 3


def test_trigger_conflicts_and_force(client: TestClient) -> None:
    client.post(url("/jobs/http.sync/pause"), headers=ACTION)
    assert_problem(client.post(url("/jobs/http.sync/trigger"), json={}), 409, "job_paused")
    forced = client.post(url("/jobs/http.sync/trigger"), json={"force": True})
    assert forced.status_code == 202

    client.post(url("/jobs/http.report/trigger"), json={})  # pending: counts as active
    busy = client.post(url("/jobs/http.report/trigger"), json={})
    assert_problem(busy, 409, "already_running")  # overlap policy "skip", max_instances 1
    assert client.post(url("/jobs/http.report/trigger"), json={"force": True}).status_code == 202


def test_pause_and_resume(client: TestClient, clock: FakeClock) -> None:
    paused = client.post(url("/jobs/http.sync/pause"), headers=ACTION)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    again = client.post(url("/jobs/http.sync/pause"), headers=ACTION)
    assert again.json()["state"] == "paused"  # idempotent
    clock.advance(minutes=10)
    resumed = client.post(url("/jobs/http.sync/resume"), headers=ACTION).json()
    assert resumed["state"] == "active"
    assert resumed["next_run_at"] > "2026-03-02T08:10:00Z"  # from now on, no catch-up


def test_a_paused_job_has_no_next_run_in_any_answer(
    client: TestClient, service: SchedulerService
) -> None:
    key = "http.sync"
    before = client.get(url(f"/jobs/{key}")).json()["next_run_at"]
    assert before is not None
    paused = client.post(url(f"/jobs/{key}/pause"), headers=ACTION).json()
    listed = {job["key"]: job for job in client.get(url("/jobs")).json()["items"]}
    by_state = client.get(url("/jobs"), params={"state": "paused"}).json()["items"]
    one = client.get(url(f"/jobs/{key}")).json()
    patched = client.patch(url(f"/jobs/{key}"), json={"max_retries": 1}).json()
    assert [paused["next_run_at"], listed[key]["next_run_at"], one["next_run_at"]] == [None] * 3
    assert [job["next_run_at"] for job in by_state] == [None]
    assert patched["state"] == "paused" and patched["next_run_at"] is None
    # the Python API says the same; the stored slot is only the storage's business
    assert service.get_job(key).next_run_at is None
    assert [j.next_run_at for j in service.list_jobs(state="paused")] == [None]
    assert service.storage.get_job(key).next_run_at is not None
    resumed = client.post(url(f"/jobs/{key}/resume"), headers=ACTION).json()
    assert resumed["next_run_at"] is not None


def test_preview(client: TestClient) -> None:
    body = client.get(url("/jobs/http.report/preview"), params={"n": 3}).json()
    assert body == {
        "job_key": "http.report",
        "fire_times": ["2026-03-03T01:30:00Z", "2026-03-04T01:30:00Z", "2026-03-05T01:30:00Z"],
    }
    clamped = client.get(url("/jobs/http.sync/preview"), params={"n": 10**9}).json()
    assert len(clamped["fire_times"]) == 100


def test_executions_of_a_job_and_of_all_jobs(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    for _ in range(3):
        clock.advance(minutes=1)
        service.run_due()  # http.sync runs every minute
    client.post(url("/jobs/http.report/trigger"), json={})

    of_job = client.get(url("/jobs/http.sync/executions"), params={"limit": 2}).json()
    assert [e["status"] for e in of_job["items"]] == ["success", "success"]
    rest = client.get(
        url("/jobs/http.sync/executions"), params={"limit": 2, "cursor": of_job["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None

    everything = client.get(url("/executions")).json()["items"]
    assert {e["job_key"] for e in everything} == {"http.sync", "http.report"}
    pending = client.get(url("/executions"), params={"status": "pending"}).json()["items"]
    assert [e["job_key"] for e in pending] == ["http.report"]
    several = client.get(url("/executions"), params=[("status", "pending"), ("status", "success")])
    assert len(several.json()["items"]) == 4
    by_job = client.get(url("/executions"), params={"job": "http.sync"}).json()["items"]
    assert len(by_job) == 3
    since = (clock.now() - timedelta(seconds=90)).isoformat()
    recent = client.get(url("/executions"), params={"job": "http.sync", "since": since})
    assert len(recent.json()["items"]) == 2
    assert_problem(client.get(url("/jobs/nope/executions")), 404, "job_not_found")


def test_get_execution_unknown(client: TestClient) -> None:
    assert_problem(client.get(url("/executions/abc-123")), 404, "execution_not_found")


def test_instances(client: TestClient, service: SchedulerService) -> None:
    [instance] = client.get(url("/instances")).json()
    assert instance["id"] == service.instance_id
    assert instance["status"] == "running" and instance["heartbeat_age_seconds"] == 0


def test_health(client: TestClient) -> None:
    health = client.get(url("/health"))
    assert health.status_code == 200
    assert health.json() == {
        "ok": True,
        "database": True,
        "schema_current": None,  # memory storage has no schema
        "running": True,
        "live_instances": 1,
        "oldest_overdue_at": None,
        "overdue_seconds": 0.0,
        "pauses": [],
        "open_incidents": 0,
        "error": None,
    }


def test_health_reports_a_broken_database_with_503(
    client: TestClient, service: SchedulerService, monkeypatch: object
) -> None:
    import pytest

    from taskmgr.exceptions import StorageError

    def down() -> None:
        raise StorageError("connection refused")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service.storage, "list_instances", down)
        response = client.get(url("/health"))
        assert response.status_code == 503
        assert response.json()["database"] is False and response.json()["ok"] is False
        # and an operation that needs the database answers 503 problem+json, not 500
        assert_problem(client.get(url("/instances")), 503, "storage_unavailable")


def test_cleanup(client: TestClient, service: SchedulerService, clock: FakeClock) -> None:
    clock.advance(minutes=1)
    service.run_due()
    clock.advance(days=40)
    response = client.post(url("/maintenance/cleanup"), json={"retention_days": 30})
    assert response.status_code == 200 and response.json() == {"deleted": 1}
    assert client.get(url("/executions")).json()["items"] == []


def test_session_says_whether_the_caller_may_write(client: TestClient) -> None:
    assert client.get(url("/session")).json() == {"can_write": True}
    reader = client.get(url("/session"), headers={"Authorization": "Bearer reader-token"})
    assert reader.status_code == 200 and reader.json() == {"can_write": False}
    assert_problem(client.get(url("/session"), headers={"Authorization": ""}), 401)


def test_openapi_is_complete_enough_to_generate_a_client(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=ADMIN).json()
    operations = {
        op["operationId"]: (method, path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert set(operations) == set(OPERATIONS)
    trigger = spec["paths"][f"{PREFIX}/jobs/{{job_key}}/trigger"]["post"]
    assert {"202", "404", "409", "413", "415", "422", "429", "503"} <= set(trigger["responses"])
    problem = trigger["responses"]["409"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert "Problem" in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["JobCreate"]["examples"]
    # the dashboard's routes are not API operations
    assert f"{PREFIX}/" not in spec["paths"]
