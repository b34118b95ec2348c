"""Bad input over HTTP (docs/fastapi.md, "Errors"; docs/guarantees.md, G6): each input
gets its documented status and a problem+json body, and nothing is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from tests.http.conftest import assert_problem, url

#: 33 levels of lists inside kwargs: deeper than the 32 levels allowed.
DEEP: object = 1
for _ in range(33):
    DEEP = [DEEP]

GOOD = {"key": "bad.x", "func": "tests.http.jobs.add", "interval": 60}

# (id, body overrides, status, code)
CREATE_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("empty key", {"key": ""}, 422, "validation_error"),
    ("129-char key", {"key": "a" * 129}, 422, "validation_error"),
    ("slash in key", {"key": "a/b"}, 422, "validation_error"),
    ("dot-dot key", {"key": ".."}, 422, "validation_error"),
    ("edge space key", {"key": " abc"}, 422, "validation_error"),
    ("newline key", {"key": "abc\n"}, 422, "validation_error"),
    ("NUL key", {"key": "ab\x00c"}, 422, "invalid_string"),
    ("lone surrogate key", {"key": "ab\ud800"}, 422, "invalid_string"),
    ("non-ASCII key", {"key": "café"}, 422, "validation_error"),
    ("SQL key", {"key": "x'; DROP TABLE jobs;--"}, 422, "validation_error"),
    ("import path", {"func": "os:system"}, 422, "unknown_task"),
    ("builtin", {"func": "builtins.eval"}, 422, "unknown_task"),
    ("trailing space", {"func": "tests.http.jobs.add "}, 422, "unknown_task"),
    ("wrong case", {"func": "tests.http.jobs.ADD"}, 422, "unknown_task"),
    ("cron 4 fields", {"interval": None, "cron": "* * * *"}, 422, "invalid_cron"),
    ("cron 7 fields", {"interval": None, "cron": "0 0 * * * * *"}, 422, "invalid_cron"),
    ("cron two lines", {"interval": None, "cron": "* * * * *\n* * * * *"}, 422, "invalid_cron"),
    ("cron minute 61", {"interval": None, "cron": "61 * * * *"}, 422, "invalid_cron"),
    ("cron hour 24", {"interval": None, "cron": "0 24 * * *"}, 422, "invalid_cron"),
    ("cron dom 0", {"interval": None, "cron": "0 0 0 * *"}, 422, "invalid_cron"),
    ("cron month 13", {"interval": None, "cron": "0 0 * 13 *"}, 422, "invalid_cron"),
    ("cron step 0", {"interval": None, "cron": "*/0 * * * *"}, 422, "invalid_cron"),
    ("cron garbage", {"interval": None, "cron": "5abc * * * *"}, 422, "invalid_cron"),
    ("cron MON#2", {"interval": None, "cron": "0 0 * * MON#2"}, 422, "invalid_cron"),
    ("cron L", {"interval": None, "cron": "0 0 L * *"}, 422, "invalid_cron"),
    ("cron never fires", {"interval": None, "cron": "0 0 30 2 *"}, 422, "invalid_cron"),
    ("cron @reboot", {"interval": None, "cron": "@reboot"}, 422, "invalid_cron"),
    ("cron full-width", {"interval": None, "cron": "\uff11 * * * *"}, 422, "invalid_cron"),
    ("cron too long", {"interval": None, "cron": "*" + " " * 300}, 422, "validation_error"),
    (
        "tz Mars",
        {"interval": None, "cron": "* * * * *", "timezone": "Mars/Olympus"},
        422,
        "invalid_timezone",
    ),
    (
        "tz traversal",
        {"interval": None, "cron": "* * * * *", "timezone": "../../etc/passwd"},
        422,
        "invalid_timezone",
    ),
    ("tz empty", {"interval": None, "cron": "* * * * *", "timezone": ""}, 422, "invalid_timezone"),
    (
        "tz offset",
        {"interval": None, "cron": "* * * * *", "timezone": "+02:00"},
        422,
        "invalid_timezone",
    ),
    (
        "tz trailing space",
        {"interval": None, "cron": "* * * * *", "timezone": "UTC "},
        422,
        "invalid_timezone",
    ),
    ("interval 0", {"interval": 0}, 422, "invalid_interval"),
    ("interval negative", {"interval": -5}, 422, "invalid_interval"),
    ("interval tiny", {"interval": 0.001}, 422, "invalid_interval"),
    ("interval huge", {"interval": 1e308}, 422, "invalid_interval"),
    ("interval string", {"interval": "10"}, 422, "validation_error"),
    ("both triggers", {"cron": "* * * * *"}, 422, "invalid_trigger"),
    ("naive at", {"interval": None, "at": "2030-01-01T00:00:00"}, 422, "validation_error"),
    ("year 10000", {"interval": None, "at": "10000-01-01T00:00:00Z"}, 422, "validation_error"),
    ("unknown kwarg", {"kwargs": {"c": 1}}, 422, "invalid_kwargs"),
    ("NUL in kwargs", {"kwargs": {"a": "x\x00"}}, 422, "invalid_string"),
    ("kwargs too big", {"kwargs": {"a": "x" * (64 * 1024)}}, 422, "invalid_kwargs"),
    ("kwargs too deep", {"kwargs": {"a": DEEP}}, 422, "json_too_deep"),
    ("max_instances 0", {"max_instances": 0}, 422, "invalid_option"),
    ("negative grace", {"misfire_grace_time": -1}, 422, "invalid_option"),
    ("unknown policy", {"overlap_policy": "sometimes"}, 422, "validation_error"),
    ("unknown field", {"owner": "me"}, 422, "validation_error"),
    ("id field", {"id": 7}, 422, "validation_error"),
    ("NUL in name", {"names": {"en": "a\x00"}}, 422, "invalid_string"),
    ("long description", {"description": "d" * 2001}, 422, "validation_error"),
]


def _state(service: SchedulerService) -> tuple[Any, ...]:
    return tuple(service.list_jobs()), tuple(service.list_executions().items)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [pytest.param(c[1], c[2], c[3], id=c[0]) for c in CREATE_CASES],
)
def test_create_refuses_bad_input_and_writes_nothing(
    client: TestClient, service: SchedulerService, body: dict[str, Any], status: int, code: str
) -> None:
    before = _state(service)
    payload = {k: v for k, v in {**GOOD, **body}.items() if v is not None}
    # json.dumps escapes what httpx cannot encode (a lone surrogate becomes "\ud800")
    raw = json.dumps(payload)
    headers = {"Content-Type": "application/json"}
    problem = assert_problem(client.post(url("/jobs"), content=raw, headers=headers), status, code)
    assert problem["detail"]
    if status == 422:
        assert problem["errors"], problem
    assert _state(service) == before


def test_field_errors_name_the_field(client: TestClient) -> None:
    cron = client.post(url("/jobs"), json={**GOOD, "interval": None, "cron": "0 24 * * *"})
    [error] = cron.json()["errors"]
    assert error["field"] == "cron.hour" and "0-23" in error["message"]
    limit = client.get(url("/jobs"), params={"limit": "many"}).json()["errors"]
    assert limit[0]["field"] == "limit" and limit[0]["location"] == "query"
    body = client.post(url("/jobs"), json={**GOOD, "max_retries": "x"}).json()["errors"]
    assert body[0]["field"] == "max_retries" and body[0]["location"] == "body"


def test_duplicate_key_is_409_and_keeps_the_first(
    client: TestClient, service: SchedulerService
) -> None:
    assert client.post(url("/jobs"), json=GOOD).status_code == 201
    assert_problem(client.post(url("/jobs"), json={**GOOD, "interval": 99}), 409, "job_exists")
    assert service.get_job("bad.x").trigger.every.total_seconds() == 60  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/nope"),
        ("PATCH", "/jobs/nope"),
        ("DELETE", "/jobs/nope"),
        ("POST", "/jobs/nope/trigger"),
        ("POST", "/jobs/nope/pause"),
        ("POST", "/jobs/nope/resume"),
        ("GET", "/jobs/nope/preview"),
        ("GET", "/jobs/nope/executions"),
    ],
)
def test_unknown_key_is_404(client: TestClient, method: str, path: str) -> None:
    body = {"max_retries": 1} if method == "PATCH" else None
    assert_problem(client.request(method, url(path), json=body), 404, "job_not_found")


@pytest.mark.parametrize(
    "path",
    ["/jobs/a%00b", "/jobs/%20abc", "/jobs/" + "a" * 129, "/jobs/caf%C3%A9", "/jobs/.hidden"],
)
def test_malformed_key_in_the_path_is_422(client: TestClient, path: str) -> None:
    assert_problem(client.get(url(path)), 422, "validation_error")


def test_encoded_slash_in_the_path_does_not_reach_a_route(client: TestClient) -> None:
    assert client.get(url("/jobs/a%2Fb")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"id": 5},
        {"key": "other"},
        {"job_key": "other"},
        {"created_at": "2026-01-01T00:00:00Z"},
        {"updated_at": "2026-01-01T00:00:00Z"},
        {"last_run_at": "2026-01-01T00:00:00Z"},
        {"next_run_at": "2026-01-01T00:00:00Z"},
        {"version": 9},
        {"state": "active"},
        {"enabled": False},
        {"source": "code"},
        {"owner": "me"},
        {"surprise": 1},
    ],
)
def test_patch_refuses_read_only_and_unknown_fields(
    client: TestClient, service: SchedulerService, body: dict[str, Any]
) -> None:
    before = _state(service)
    assert_problem(client.patch(url("/jobs/http.sync"), json=body), 422, "validation_error")
    assert _state(service) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"cron": "61 * * * *"}, "invalid_cron"),
        ({"interval": 0}, "invalid_interval"),
        ({"timezone": "Mars/Olympus"}, "invalid_option"),  # http.sync is an interval job
        ({"func": "os.system"}, "unknown_task"),
        ({"kwargs": {"nope": 1}}, "invalid_kwargs"),
        ({"max_retries": -1}, "invalid_option"),
    ],
)
def test_patch_refuses_bad_values(
    client: TestClient, service: SchedulerService, body: dict[str, Any], code: str
) -> None:
    before = _state(service)
    problem = assert_problem(client.patch(url("/jobs/http.sync"), json=body), 422)
    assert problem["code"] in (code, "invalid_input"), problem
    assert _state(service) == before


def test_sql_looking_and_unicode_text_is_stored_verbatim(
    client: TestClient, service: SchedulerService
) -> None:
    names = {
        "en": "x'; DROP TABLE jobs;--",
        "ja": "毎晩のレポート",
        "ar": "تقرير ليلي",
        "emoji": "🚀 ok\r\nX-Injected: 1",
        "combining": "e\u0301",
    }
    body = {**GOOD, "names": names, "description": "name__contains='%_'"}
    response = client.post(url("/jobs"), json=body)
    assert response.status_code == 201, response.text
    assert "X-Injected" not in response.headers
    job = client.get(url("/jobs/bad.x")).json()
    assert job["names"] == names and job["description"] == "name__contains='%_'"
    assert len(service.list_jobs()) == 3  # the table is intact


def test_bad_query_parameters(client: TestClient) -> None:
    assert_problem(client.get(url("/jobs"), params={"limit": -1}), 422)
    assert_problem(client.get(url("/jobs"), params={"limit": 0}), 422)
    assert_problem(client.get(url("/jobs"), params={"cursor": "!!!"}), 422, "invalid_cursor")
    assert_problem(client.get(url("/jobs"), params={"state": "sleepy"}), 422)
    assert_problem(client.get(url("/executions"), params={"cursor": "nope"}), 422, "invalid_input")
    assert_problem(client.get(url("/executions"), params={"status": "great"}), 422)
    assert_problem(client.get(url("/executions"), params={"job": "a/b"}), 422)
    assert_problem(client.get(url("/executions"), params={"since": "2026-01-01T00:00:00"}), 422)
    assert_problem(client.get(url("/jobs/http.sync/preview"), params={"n": 0}), 422)
    big = client.get(url("/jobs"), params={"limit": 10**9})
    assert big.status_code == 200  # clamped to 500, not refused


def test_trigger_bad_bodies(client: TestClient, service: SchedulerService) -> None:
    before = _state(service)
    cases = [
        ({"kwargs": {"unknown": 1}}, "invalid_kwargs"),
        ({"kwargs": [1, 2]}, "validation_error"),
        ({"force": "yes"}, "validation_error"),
        ({"actor": "mallory"}, "validation_error"),  # the actor comes from auth, not the body
    ]
    for body, code in cases:
        assert_problem(client.post(url("/jobs/http.sync/trigger"), json=body), 422, code)
    assert _state(service) == before


def test_cleanup_bad_retention(client: TestClient) -> None:
    assert_problem(client.post(url("/maintenance/cleanup"), json={"retention_days": -1}), 422)
    assert_problem(client.post(url("/maintenance/cleanup"), json={}), 422)
