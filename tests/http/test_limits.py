"""Limits: body size (413) and media type (415) checked before parsing, JSON that
could hurt the parser (422), page and preview clamps, the manual-run rate limit
(429 + Retry-After) and the 503 when nothing would run a manual trigger."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from taskmgr import SchedulerService
from taskmgr.fastapi import RateLimit
from taskmgr.fastapi.limits import TriggerLimiter, check_json
from taskmgr.storage.memory import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service
from tests.http.conftest import ACTION, ADMIN, assert_problem, build_app, register_all, url

JSON = {"Content-Type": "application/json"}


def test_body_over_the_limit_is_413_from_content_length(client: TestClient) -> None:
    body = b'{"key": "' + b"x" * (1024 * 1024) + b'"}'
    assert_problem(client.post(url("/jobs"), content=body, headers=JSON), 413, "payload_too_large")


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB in all, without a Content-Length
            sent.append(1)
            yield b" " * 65536

    response = client.post(url("/jobs"), content=chunks(), headers=JSON)
    assert_problem(response, 413, "payload_too_large")


def test_the_limit_is_configurable(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=100)
    body = {"kwargs": {"a": "x" * 100}}
    assert_problem(client.post(url("/jobs/http.sync/trigger"), json=body), 413)
    assert client.post(url("/jobs/http.sync/trigger"), json={}).status_code == 202
    with pytest.raises(ValueError, match="max_body_bytes"):
        make_client(max_body_bytes=0)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"force": true}'),
        ("application/x-www-form-urlencoded", b"force=true"),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("application/xml", b"<force/>"),
        (None, b'{"force": true}'),
        ("text/plain", b""),  # a form post without fields
    ],
)
def test_non_json_media_type_is_415(
    client: TestClient, service: SchedulerService, content_type: str | None, body: bytes
) -> None:
    # with the action header (else 403, tests/http/test_csrf.py): the body guard refuses
    headers = {**ACTION, "Content-Type": content_type} if content_type else ACTION
    response = client.post(url("/jobs/http.sync/trigger"), content=body, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")
    assert service.list_executions().items == []


def test_json_variants_are_accepted(client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = client.patch(
            url("/jobs/http.sync"),
            content=b'{"max_retries": 1}',
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
        (b'{"kwargs": {"a": NaN}}', "invalid_json"),
        (b'{"kwargs": {"a": Infinity}}', "invalid_json"),
        (b'{"kwargs": {"a": ' + b"9" * 5000 + b"}}", "invalid_json"),
        (b'{"kwargs": {"a": "\\u0000"}}', "invalid_string"),
        (b'{"kwargs": {"\\ud800": 1}}', "invalid_string"),
        (b'{"kwargs": ', "invalid_json"),
        (b'{"kwargs": {"a": "\xff"}}', "invalid_json"),
        (b"[]", "validation_error"),
        (b'"force"', "validation_error"),
    ],
)
def test_hostile_json_is_422(
    client: TestClient, service: SchedulerService, body: bytes, code: str
) -> None:
    response = client.post(url("/jobs/http.sync/trigger"), content=body, headers=JSON)
    assert_problem(response, 422, code)
    assert service.list_executions().items == []


def test_depth_counts_only_structure_not_brackets_in_strings() -> None:
    check_json(b'{"kwargs": {"a": "' + b"[" * 1000 + b'\\"]"}}')


def test_kwargs_nesting_limit_is_exactly_32(client: TestClient) -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth - 1):  # the kwargs dict itself is level 1
            value = [value]
        return value

    trigger = url("/jobs/http.report/trigger")
    ok = client.post(trigger, json={"kwargs": {"recipients": nested(32)}})
    assert ok.status_code == 202, ok.text
    deep = client.post(trigger, json={"kwargs": {"recipients": nested(33)}, "force": True})
    assert_problem(deep, 422, "json_too_deep")


def test_manual_run_rate_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(trigger_rate_limit=RateLimit(count=2, per_seconds=3600))
    assert client.post(url("/jobs/http.sync/trigger"), json={"force": True}).status_code == 202
    assert client.post(url("/jobs/http.sync/trigger"), json={"force": True}).status_code == 202
    refused = client.post(url("/jobs/http.sync/trigger"), json={"force": True})
    assert_problem(refused, 429, "rate_limited")
    assert 3590 <= int(refused.headers["retry-after"]) <= 3600
    # per job: another job still runs
    assert client.post(url("/jobs/http.report/trigger"), json={}).status_code == 202
    # refused runs (here 409, busy) do not use the quota
    assert client.post(url("/jobs/http.report/trigger"), json={}).status_code == 409
    assert client.post(url("/jobs/http.report/trigger"), json={"force": True}).status_code == 202


def test_rate_limiter_window_slides() -> None:
    now = [0.0]
    limiter = TriggerLimiter(RateLimit(2, 10), clock=lambda: now[0])
    assert limiter.acquire(("j", "a")) is None
    now[0] = 4
    assert limiter.acquire(("j", "a")) is None
    assert limiter.acquire(("j", "a")) == 6  # the first hit leaves the window at t=10
    assert limiter.acquire(("j", "b")) is None  # per principal
    now[0] = 10.5
    assert limiter.acquire(("j", "a")) is None
    with pytest.raises(ValueError, match="count"):
        RateLimit(0, 1)


def test_trigger_without_any_running_instance_is_503(clock: FakeClock) -> None:
    storage = MemoryStorage()
    api_only = register_all(make_test_service(clock=clock, storage=storage))
    with TestClient(build_app(api_only), headers=ADMIN) as client:
        # job operations only need the database: they work without start()
        created = client.post(
            url("/jobs"), json={"key": "api.add", "func": "tests.http.jobs.add", "interval": 60}
        )
        assert created.status_code == 201, created.text
        assert client.post(url("/jobs/api.add/pause"), headers=ACTION).status_code == 200
        assert client.post(url("/jobs/api.add/resume"), headers=ACTION).status_code == 200
        assert client.get(url("/health")).json()["running"] is False
        # but a manual run needs something to run it
        refused = client.post(url("/jobs/api.add/trigger"), json={})
        assert_problem(refused, 503, "service_not_running")
        assert api_only.list_executions().items == []

        # another instance sharing the database will run it: accepted
        worker = register_all(make_test_service(clock=clock, storage=storage))
        worker.start()
        try:
            accepted = client.post(url("/jobs/api.add/trigger"), json={})
            assert accepted.status_code == 202
            [done] = worker.run_due()
            assert done.id == accepted.json()["id"] and done.status == "success"
        finally:
            worker.shutdown()
