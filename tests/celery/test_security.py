"""A worker runs only what the host registered, from JSON messages only (docs/guarantees.md, G6):
a pickle body, a message taskmgr did not write and an execution whose function the
worker does not have are all refused without running anything, and the worker keeps
working."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from taskmgr.celery import TASK_NAME
from taskmgr.core.models import ExecutionStatus
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for_ended, workers
from tests.celery.hostapp import build

pytestmark = pytest.mark.slow


class _Canary:
    """Unpickling this creates a file: the classic pickle payload, made harmless."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _publish_raw(setup: Setup, body: bytes, content_type: str, encoding: str) -> None:
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": TASK_NAME,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "attacker",
    }
    with Connection(setup.broker) as conn:
        producer = conn.Producer()
        queue = Queue(setup.queue, Exchange(setup.queue), routing_key=setup.queue)
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=setup.queue,
            declare=[queue],
            headers=headers,
            content_type=content_type,
            content_encoding=encoding,
        )


def test_pickle_foreign_messages_and_unregistered_functions_run_nothing(
    redis_setup: Setup, tmp_path: Path
) -> None:
    redis_setup.accept_pickle = True  # even a host that accepts pickle for its own tasks
    pickled_canary = tmp_path / "pickle-canary"
    job_canary = tmp_path / "job-canary"
    # the scheduler knows ``canary``; the worker's registry does not
    app, service = build(
        redis_setup.broker, redis_setup.database, redis_setup.queue, with_canary=True
    )
    with workers() as started:
        started.append(worker := Worker(redis_setup))
        worker_id = worker.wait_ready(service)
        body = pickle.dumps(((), {"execution_id": _Canary(pickled_canary)}, {}), protocol=2)
        _publish_raw(redis_setup, body, "application/x-python-serialize", "binary")
        # JSON, but not a message taskmgr writes (a function named in it is never looked at)
        app.tasks[TASK_NAME].apply_async(
            kwargs={"execution_id": "x", "owner": "y", "attempt": 1, "func": "os:system"},
            queue=redis_setup.queue,
        )
        at = datetime.now(UTC) + timedelta(seconds=0.5)
        service.create_job("canary", jobs.canary, at=at, kwargs={"path": str(job_canary)})
        service.create_job("healthy", jobs.witness, at=at + timedelta(seconds=0.5))
        with service:
            wait_for_ended(service, 2, 30, "both executions to end")
        by_key = {e.job_key: e for e in all_executions(service)}
        service.close()
        log = worker.output()

    assert not pickled_canary.exists(), "a pickle body was decoded"
    assert not job_canary.exists(), "an unregistered function ran"
    refused = by_key["canary"]
    assert refused.status is ExecutionStatus.FAILED
    assert refused.owner == worker_id
    assert refused.error_type == "taskmgr.exceptions.FunctionNotRegisteredError"
    assert by_key["healthy"].status is ExecutionStatus.SUCCESS  # the worker kept working
    assert "taskmgr accepts JSON only" in log
    assert "that taskmgr did not send: nothing was run" in log
    assert [row.job_key for row in jobs.read_witness(redis_setup.witness)] == ["healthy"]
