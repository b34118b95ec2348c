"""A worker runs only what the host registered, from JSON messages only (docs/guarantees.md, G6):
a pickle body, a message taskmgr did not write and an execution whose function the
worker does not have are all refused without running anything, and the worker keeps
working. And a forged or replayed message never starts an execution a second time
(docs/celery.md, delivery guarantees)."""

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
from tests.celery.harness import Setup, Worker, all_executions, wait_for, wait_for_ended, workers
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
    # the host's app accepts pickle: the worker says so where it is seen, once
    assert log.count("WARNING/MainProcess] this worker accepts ['json', 'pickle']") == 1, log
    assert "that taskmgr did not send: nothing was run" in log
    assert [row.job_key for row in jobs.read_witness(redis_setup.witness)] == ["healthy"]


def test_a_forged_or_replayed_message_does_not_start_a_running_execution_again(
    redis_setup: Setup, tmp_path: Path
) -> None:
    app, service = build(redis_setup.broker, redis_setup.database, redis_setup.queue)
    release = tmp_path / "release"  # the run goes on until every copy was handled
    service.create_job(
        "held",
        jobs.held,
        at=datetime.now(UTC) + timedelta(seconds=0.5),
        kwargs={"release": str(release)},
    )
    with workers() as started:
        # two pool processes: one runs the job, the other is free for the copies
        started.append(worker := Worker(redis_setup, pool="prefork", concurrency=2))
        worker_id = worker.wait_ready(service)
        with service:
            start = wait_for(lambda: jobs.read_witness(redis_setup.witness), 20, "the start")[0]
            running = service.get_execution(start.execution_id)
            assert running.status is ExecutionStatus.RUNNING and running.owner == worker_id
            assert running.celery_task_id is not None and running.started_at is not None
            copies = [
                # naming the worker that runs it as the owner it takes the execution from
                (worker_id, str(uuid.uuid4())),
                (worker_id, running.celery_task_id),
                # naming the scheduler that dispatched it, with a made-up task id
                (service.instance_id, str(uuid.uuid4())),
                # the original message exactly, replayed while it runs
                (service.instance_id, running.celery_task_id),
            ]
            for owner, task_id in copies:
                app.tasks[TASK_NAME].apply_async(
                    kwargs={"execution_id": running.id, "owner": owner, "attempt": 1},
                    task_id=task_id,
                    queue=redis_setup.queue,
                    serializer="json",
                )
            ignored = (
                f"for execution {running.id} ignored: it is running (owner {worker_id}, started)"
            )
            wait_for(
                lambda: worker.output().count(ignored) == len(copies),
                30,
                "the worker to ignore every copy",
                detail=worker.output,
            )
            # all of them were handled while the first run was still going
            assert service.get_execution(running.id) == running
            assert [row.execution_id for row in jobs.read_witness(redis_setup.witness)] == [
                running.id
            ]
            release.touch()
            wait_for_ended(service, 1, 20, "the run to end")
        ended = service.get_execution(running.id)
        service.close()

    assert ended.status is ExecutionStatus.SUCCESS
    assert ended.owner == worker_id
    starts = jobs.read_witness(redis_setup.witness)
    assert [(row.execution_id, row.note) for row in starts] == [(running.id, "start")]
