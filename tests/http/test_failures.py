"""The operator's reads over HTTP: what failed across jobs (grouped by the storage),
the history filtered by several statuses and triggers, and a run's chain of attempts."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from taskmgr import SchedulerService, current_execution
from taskmgr.testing import FakeClock
from tests.http.conftest import assert_problem, url


def flaky() -> str:
    """Fails on its first two attempts, succeeds on the third."""
    context = current_execution()
    attempt = context.attempt if context is not None else 1
    if attempt < 3:
        raise ConnectionError(f"service unavailable (attempt {attempt} of 3)")
    return "ok"


def _run_flaky_once(client: TestClient, service: SchedulerService, clock: FakeClock) -> str:
    """A job that fails twice then succeeds, run by hand through its three attempts
    (its schedule fires in an hour, after the test); returns the id of its chain."""
    service.register(flaky)
    created = client.post(
        url("/jobs"),
        json={
            "key": "ops.flaky",
            "func": f"{__name__}.flaky",
            "interval": 3600,
            "max_retries": 2,
            "retry_backoff": {"base": 1, "max": 1, "jitter": 0},
        },
    )
    assert created.status_code == 201, created.text
    assert client.post(url("/jobs/ops.flaky/trigger"), json={}).status_code == 202
    attempts = []
    for _ in range(3):  # a second apart: each attempt has a created_at of its own
        clock.advance(seconds=1)
        attempts += service.run_due()
    assert [(e.job_key, e.attempt, e.status.value) for e in attempts] == [
        ("ops.flaky", 1, "failed"),
        ("ops.flaky", 2, "failed"),
        ("ops.flaky", 3, "success"),
    ]
    assert len({e.chain_id for e in attempts}) == 1
    return attempts[0].chain_id


def test_failures_are_grouped_by_job_and_error_type(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    chain = _run_flaky_once(client, service, clock)
    client.post(url("/jobs/http.sync/trigger"), json={})
    service.run_due()  # a success elsewhere: not a failure

    body = client.get(url("/failures")).json()

    assert body["truncated"] is False
    [group] = body["items"]
    assert group["job_key"] == "ops.flaky"
    assert (group["status"], group["error_type"]) == ("failed", "builtins.ConnectionError")
    assert (group["count"], group["runs"]) == (2, 1)
    assert group["last_message"] == "service unavailable (attempt 2 of 3)"
    assert group["first_seen"] < group["last_seen"]
    latest = client.get(url(f"/executions/{group['last_execution_id']}")).json()
    assert (latest["attempt"], latest["chain_id"]) == (2, chain)

    # filters: the job, the status, the time of the failure
    assert client.get(url("/failures"), params={"job": "http.sync"}).json()["items"] == []
    assert client.get(url("/failures"), params={"status": "timeout"}).json()["items"] == []
    later = (clock.now() + timedelta(seconds=1)).isoformat()
    assert client.get(url("/failures"), params={"since": later}).json()["items"] == []
    until = client.get(url("/failures"), params={"until": group["first_seen"]}).json()
    assert [g["count"] for g in until["items"]] == [1]
    both = client.get(url("/failures"), params=[("status", "failed"), ("status", "lost")])
    assert len(both.json()["items"]) == 1
    assert client.get(url("/failures"), params={"limit": 1000}).status_code == 200  # clamped


def test_history_filters_by_several_statuses_and_triggers_and_by_chain(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    chain = _run_flaky_once(client, service, clock)  # at 08:00:01, 02 and 03
    clock.advance(seconds=57)
    [synced] = service.run_due()  # http.sync's slot at 08:01:00
    assert (synced.job_key, synced.trigger.value) == ("http.sync", "schedule")
    clock.advance(seconds=1)
    second_run = clock.now()
    client.post(url("/jobs/ops.flaky/trigger"), json={})
    clock.advance(seconds=1)
    service.run_due()  # another run by hand: its first attempt fails, its retry waits

    def keys(path: str, params: object) -> list[tuple[str, int, str]]:
        response = client.get(url(path), params=params)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        return [(e["trigger"], e["attempt"], e["status"]) for e in response.json()["items"]]

    assert keys("/executions", {"trigger": "retry"}) == [
        ("retry", 2, "pending"),
        ("retry", 3, "success"),
        ("retry", 2, "failed"),
    ]
    assert keys("/executions", [("trigger", "schedule"), ("trigger", "manual")]) == [
        ("manual", 1, "failed"),
        ("schedule", 1, "success"),
        ("manual", 1, "failed"),
    ]
    assert keys("/executions", [("trigger", "retry"), ("status", "failed")]) == [
        ("retry", 2, "failed")
    ]
    assert keys("/executions", {"chain": chain}) == [
        ("retry", 3, "success"),
        ("retry", 2, "failed"),
        ("manual", 1, "failed"),
    ]
    # the same filters on one job's history, with a time range (scheduled_for)
    job_path = "/jobs/ops.flaky/executions"
    assert keys(job_path, [("status", "success"), ("status", "pending")]) == [
        ("retry", 2, "pending"),
        ("retry", 3, "success"),
    ]
    assert keys(job_path, {"trigger": "manual"}) == [("manual", 1, "failed")] * 2
    assert keys(job_path, {"since": second_run.isoformat()}) == [
        ("retry", 2, "pending"),
        ("manual", 1, "failed"),
    ]
    assert len(keys(job_path, {"until": (second_run - timedelta(seconds=1)).isoformat()})) == 3


def test_bad_filters_are_refused_with_problem_details(client: TestClient) -> None:
    bad: list[tuple[str, list[tuple[str, str | int | float | bool | None]]]] = [
        ("/executions", [("trigger", "bogus")]),
        ("/executions", [("status", "failed"), ("status", "nope")]),
        ("/executions", [("chain", "not a uuid!")]),
        ("/executions", [("since", "2026-01-01")]),
        ("/jobs/http.sync/executions", [("trigger", "later")]),
        ("/jobs/http.sync/executions", [("until", "1700000000")]),
        ("/failures", [("status", "success")]),
        ("/failures", [("since", "yesterday")]),
        ("/failures", [("limit", 0)]),
        ("/failures", [("job", "bad key!")]),
    ]
    for path, params in bad:
        body = assert_problem(client.get(url(path), params=params), 422, "validation_error")
        assert body["errors"], (path, params)
