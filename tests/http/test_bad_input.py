"""Bad input over HTTP (docs/fastapi.md, "Errors"; docs/guarantees.md, G6): each input
gets its documented status and a problem+json body, and nothing is written."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.exceptions import DataRejectedError, StorageError
from taskmgr.fastapi.problems import DATABASE_UNAVAILABLE
from taskmgr.fastapi.schemas import HEALTH_ERROR
from taskmgr.testing import FakeClock, make_test_service
from tests.http.conftest import ACTION, ADMIN, assert_problem, build_app, register_all, url

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
    (
        "51 names",
        {"names": {f"l{chr(97 + i // 26)}{chr(97 + i % 26)}": "n" for i in range(51)}},
        422,
        "invalid_option",
    ),
    ("name language not a tag", {"names": {"en_US": "x"}}, 422, "invalid_option"),
    ("name language one letter", {"names": {"e": "x"}}, 422, "invalid_option"),
    (
        "name language too long",
        {"names": {"en-" + "-".join(["abcdefgh"] * 4): "x"}},
        422,
        "invalid_option",
    ),
    ("name too long", {"names": {"en": "n" * 201}}, 422, "invalid_option"),
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
    response = client.request(method, url(path), json=body, headers=ACTION)
    assert_problem(response, 404, "job_not_found")


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
        "fr-CA": "e\u0301",  # a combining accent
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
    # not base64url: the schema's pattern refuses it; base64url of no key: not issued
    assert_problem(client.get(url("/jobs"), params={"cursor": "!!!"}), 422, "validation_error")
    assert_problem(client.get(url("/jobs"), params={"cursor": "AAAA"}), 422, "invalid_cursor")
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


# -- datetimes and cursors: strict, and refused before the database is asked ------------


@pytest.mark.parametrize(
    "value",
    [
        "0.5",  # a number is not a date, although it could be read as a Unix time
        "1700000000",
        "-1",
        "2026-01-01",  # no time
        "2026-01-01T00:00",  # no seconds
        "2026-01-01T00:00:00",  # no offset
        "2026-01-01 00:00:00Z",  # a space, not T
        " 2026-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",  # no such day
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00+24:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: would overflow
        "1969-12-31T23:59:59Z",  # before what the database stores
        "9999-01-01T00:00:00Z",  # after it
        "9999-12-31T23:59:59-01:00",
        "10000-01-01T00:00:00Z",
    ],
)
@pytest.mark.parametrize("name", ["since", "until"])
def test_history_datetimes_are_strict_and_in_range(
    client: TestClient, name: str, value: str
) -> None:
    problem = assert_problem(client.get(url("/executions"), params={name: value}), 422)
    assert problem["code"] == "validation_error"
    [error] = problem["errors"]
    assert error["field"] == name and error["location"] == "query"


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01t00:00:00z",
        "2026-01-01T00:00:00.123456+05:30",
        "1970-01-01T00:00:00+05:00",  # 1969 in UTC: no row is there, the filter still means it
        "9998-12-31T23:59:59-05:00",  # 9999 in UTC: likewise
    ],
)
def test_history_datetimes_in_the_documented_form_are_accepted(
    client: TestClient, value: str
) -> None:
    for name in ("since", "until"):
        response = client.get(url("/executions"), params={name: value})
        assert response.status_code == 200, response.text


def _cursor(created_at: str, execution_id: object) -> str:
    raw = json.dumps([created_at, execution_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("0001-01-01T00:00:00+01:00", "a"),  # overflows in UTC
        _cursor("1969-12-31T00:00:00+00:00", "a"),
        _cursor("9999-06-01T00:00:00+00:00", "a"),
        _cursor("2026-01-01T00:00:00+00:00", "a\x00b"),  # NUL: PostgreSQL refuses it
        _cursor("2026-01-01T00:00:00+00:00", "x" * 65),
        _cursor("2026-01-01T00:00:00+00:00", "a b"),
        _cursor("2026-01-01T00:00:00+00:00", ""),
        _cursor("2026-01-01T00:00:00+00:00", 7),
    ],
)
def test_executions_cursor_no_page_issued_is_422(client: TestClient, cursor: str) -> None:
    response = client.get(url("/executions"), params={"cursor": cursor})
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["errors"][0]["field"] == "cursor"
    job_page = client.get(url("/jobs/http.sync/executions"), params={"cursor": cursor})
    assert_problem(job_page, 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/jobs", {**GOOD, "interval": None, "at": 1893456000}),  # a Unix time
        ("/jobs", {**GOOD, "interval": None, "at": "1893456000"}),
        ("/jobs", {**GOOD, "interval": None, "at": "2030-01-01"}),
        ("/jobs", {**GOOD, "interval": None, "at": "0001-01-01T00:00:00+01:00"}),
        ("/jobs/http.sync/defer", {"run_at": 1893456000.5}),
        ("/jobs/http.sync/defer", {"run_at": "2030-01-01T00:00"}),
        ("/jobs/http.sync/defer", {"run_at": "9999-12-31T23:59:59-01:00"}),
    ],
)
def test_body_datetimes_are_strict(
    client: TestClient, service: SchedulerService, path: str, body: dict[str, Any]
) -> None:
    before = _state(service)
    payload = {k: v for k, v in body.items() if v is not None}
    problem = assert_problem(client.post(url(path), json=payload), 422, "validation_error")
    assert problem["errors"][0]["location"] == "body"
    assert _state(service) == before


# -- what the database says stays in the server log ---------------------------------------

#: What a driver's message may carry: the database's location.
SECRET_PLACE = "postgresql+psycopg://taskmgr@db-7.internal.example:5432/prod"


def test_a_value_the_database_refuses_is_422_not_503(
    client: TestClient,
    service: SchedulerService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise DataRejectedError(f"list_executions failed: bad value for {SECRET_PLACE}")

    monkeypatch.setattr(service.storage, "list_executions", refuse)
    with caplog.at_level(logging.WARNING, logger="taskmgr.api"):
        response = client.get(url("/executions"))
    problem = assert_problem(response, 422, "data_rejected")
    assert problem["errors"] and "db-7" not in response.text
    assert "list_executions" not in response.text
    assert SECRET_PLACE in caplog.text  # the operator still sees what failed


def test_503_never_names_the_database(
    client: TestClient,
    service: SchedulerService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise StorageError(f"cannot use database URL {SECRET_PLACE!r}: connection refused")

    monkeypatch.setattr(service.storage, "list_executions", down)
    monkeypatch.setattr(service.storage, "list_instances", down)
    with caplog.at_level(logging.WARNING, logger="taskmgr.api"):
        problem_response = client.get(url("/executions"))
        health = client.get(url("/health"))
    problem = assert_problem(problem_response, 503, "storage_unavailable")
    assert problem["detail"] == DATABASE_UNAVAILABLE
    assert health.status_code == 503
    body = health.json()
    assert body["database"] is False and body["ok"] is False and body["error"] == HEALTH_ERROR
    assert set(body) == {
        "ok",
        "database",
        "schema_current",
        "running",
        "live_instances",
        "oldest_overdue_at",
        "overdue_seconds",
        "pauses",
        "open_incidents",
        "error",
    }
    for response in (problem_response, health):
        assert "db-7" not in response.text and "connection refused" not in response.text
    assert caplog.text.count(SECRET_PLACE) >= 2  # both failures are in the server log


def test_a_manual_run_while_the_database_is_down_does_not_name_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_only = register_all(make_test_service(clock=clock))  # not started: asks the health

    def down(*args: object, **kwargs: object) -> None:
        raise StorageError(f"cannot use database URL {SECRET_PLACE!r}")

    api_only.open()
    monkeypatch.setattr(api_only.storage, "list_instances", down)
    with TestClient(build_app(api_only), headers=ADMIN) as client:
        response = client.post(url("/jobs/http.sync/trigger"), json={})
    problem = assert_problem(response, 503, "storage_unavailable")
    assert "db-7" not in response.text and problem["detail"] == DATABASE_UNAVAILABLE


def test_health_carries_no_database_location(client: TestClient) -> None:
    text = client.get(url("/health")).text
    assert "memory" not in text.lower() and "://" not in text


# -- the job search and the dashboard's recent runs: filtered by the database ------------


def test_the_job_search_is_one_bounded_query(
    client: TestClient, service: SchedulerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real = service.storage.list_jobs

    def spy(**options: Any) -> Any:
        calls.append(options)
        return real(**options)

    monkeypatch.setattr(service.storage, "list_jobs", spy)
    page = client.get(url("/jobs"), params={"q": "SYNC", "limit": 1}).json()
    assert [job["key"] for job in page["items"]] == ["http.sync"]
    # the text goes to the database, which reads a page and one row to tell if there
    # is another, in one query, never every job to filter them here
    assert [(call["text"], call["limit"]) for call in calls] == [("SYNC", 2)]
    assert_problem(client.get(url("/jobs"), params={"q": "a\x00b"}), 422, "validation_error")
    assert_problem(client.get(url("/jobs"), params={"q": "q" * 201}), 422, "validation_error")


def test_recent_runs_of_many_jobs_in_one_call(
    client: TestClient, service: SchedulerService, clock: FakeClock
) -> None:
    for _ in range(3):
        client.post(url("/jobs/http.sync/trigger"), json={})
        service.run_due()
        clock.advance(seconds=1)
    response = client.get(
        url("/recent-executions"),
        params=[
            ("job_key", "http.sync"),
            ("job_key", "nope"),
            ("job_key", "http.sync"),
            ("per_job", "2"),
        ],
    )
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [entry["job_key"] for entry in entries] == ["http.sync", "nope"]
    assert client.get(url("/recent-executions")).json() == []  # no job, no runs
    newest = client.get(url("/jobs/http.sync/executions"), params={"limit": 2}).json()["items"]
    assert entries[0]["items"] == newest and entries[1]["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        [("job_key", "a/b")],
        [("job_key", "http.sync"), ("per_job", "0")],
        [("job_key", "http.sync"), ("per_job", "101")],
        [("job_key", "http.sync"), ("per_job", "1.5")],
        [("job_key", f"j{n}") for n in range(501)],
    ],
)
def test_recent_runs_bad_input(client: TestClient, params: list[tuple[str, str]]) -> None:
    assert_problem(client.get(url("/recent-executions"), params=params), 422, "validation_error")
