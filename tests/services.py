"""Where the real test services are, and what to do when one is down.

Each ``require_*`` returns the service URL when it answers, else skips the test with
a clear reason, or fails it when ``CI`` is set or ``TASKMGR_REQUIRE_SERVICES=1``
(there, a missing service is a broken machine, not an optional extra). Probes are
plain TCP connects, so this module needs no client libraries.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = [
    "amqp_url",
    "postgres_url",
    "redis_url",
    "require_amqp",
    "require_postgres",
    "require_redis",
    "services_required",
]

DEFAULTS = {
    "postgres": ("TASKMGR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "redis": ("TASKMGR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "amqp": ("TASKMGR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "amqp": 5672}


def _url(service: str) -> str:
    variable, default = DEFAULTS[service]
    return os.environ.get(variable) or default


def postgres_url() -> str:
    return _url("postgres")


def redis_url() -> str:
    return _url("redis")


def amqp_url() -> str:
    return _url("amqp")


def services_required() -> bool:
    """True where a missing service must fail the run instead of skipping tests."""
    return bool(os.environ.get("CI")) or os.environ.get("TASKMGR_REQUIRE_SERVICES") == "1"


def unavailable(service: str, reason: str) -> NoReturn:
    variable = DEFAULTS[service][0]
    message = (
        f"{service} is not reachable at {_url(service)} ({reason}); start it "
        f"(.ci/run starts the test services) or point {variable} at one"
    )
    if services_required():
        pytest.fail(message + " [required: CI or TASKMGR_REQUIRE_SERVICES=1 is set]")
    pytest.skip(message)


@cache
def _probe(host: str, port: int) -> str | None:
    """None when something accepts TCP connections there, else why not. Cached: one
    probe per process, so a down service costs one timeout, not one per test."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _require(service: str) -> str:
    url = _url(service)
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORTS[service]
    problem = _probe(host, port)
    if problem is not None:
        unavailable(service, problem)
    return url


def require_postgres() -> str:
    return _require("postgres")


def require_redis() -> str:
    return _require("redis")


def require_amqp() -> str:
    return _require("amqp")
