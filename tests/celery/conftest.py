"""Fixtures for the Celery tests: a broker (real Redis or RabbitMQ), a queue of the test's
own, a SQLite database shared by the test's scheduler and its workers, and the
witness table the jobs write their starts to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.celery import jobs
from tests.celery.harness import Setup, redis_db_url
from tests.services import require_amqp, require_redis


def _delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(broker, connect_timeout=2) as conn:
        conn.default_channel.queue_delete(queue)
    if broker.startswith("redis"):
        import redis

        with contextlib.suppress(Exception):
            client = redis.Redis.from_url(broker, socket_connect_timeout=2)
            client.delete(queue)
            client.close()


def _setup(broker: str, tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(
        broker=broker,
        database=f"sqlite:///{tmp_path / 'taskmgr.db'}",
        witness=f"sqlite:///{tmp_path / 'witness.db'}",
        logs=tmp_path,
    )
    jobs.create_witness_table(setup.witness)
    try:
        yield setup
    finally:
        _delete_queue(broker, setup.queue)


@pytest.fixture
def redis_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    for setup in _setup(redis_db_url(require_redis()), tmp_path):
        monkeypatch.setenv("CELERY_WITNESS_URL", setup.witness)
        yield setup


@pytest.fixture
def amqp_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    for setup in _setup(require_amqp(), tmp_path):
        monkeypatch.setenv("CELERY_WITNESS_URL", setup.witness)
        yield setup
