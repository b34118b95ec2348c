"""Messages lost in a running broker (their Redis list deleted, as a restart without
persistence leaves it): the scheduler publishes their executions again under new task
ids within seconds, far before ``dispatch_timeout``; a real worker runs each once, and
the lost originals, delivered late, start nothing."""

from __future__ import annotations

import collections
import json
import logging
from datetime import UTC, datetime

import pytest
import redis

from taskmgr.core.models import ExecutionStatus
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for, workers
from tests.celery.hostapp import build

pytestmark = pytest.mark.slow

JOBS = 6


def _task_ids(raw: list[bytes]) -> set[str]:
    return {json.loads(message)["headers"]["id"] for message in raw}


def test_lost_messages_are_published_again_within_seconds_and_run_once(
    redis_setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "taskmgr.dispatch")
    setup = redis_setup
    broker = redis.Redis.from_url(setup.broker)
    _, service = build(
        setup.broker,
        setup.database,
        setup.queue,
        receive_timeout=1.0,
        dispatch_timeout=300.0,  # the fallback, far beyond this test's bounds
    )
    now = datetime.now(UTC)
    for i in range(JOBS):
        service.create_job(f"job-{i}", jobs.witness, at=now)
    with workers() as started, service:
        # no worker yet: the messages wait in the queue, and waiting behind others in
        # a queue is not lost, so nothing is published again
        wait_for(lambda: broker.llen(setup.queue) == JOBS, 15, "every message in the queue")
        wait_for(
            lambda: any(f"wait behind {JOBS} message(s)" in r.getMessage() for r in caplog.records),
            15,
            "the dispatcher to find them waiting behind each other",
        )
        originals = broker.lrange(setup.queue, 0, -1)
        assert len(originals) == JOBS
        assert _task_ids(originals) == {e.celery_task_id for e in all_executions(service)}

        broker.delete(setup.queue)  # lost, as in a restart without persistence
        lost = _task_ids(originals)

        def replaced() -> bool:
            current = {e.celery_task_id for e in all_executions(service)}
            return broker.llen(setup.queue) == JOBS and not current & lost

        # nothing waits in the queue any more: each is published again, under a new id
        wait_for(replaced, 10, "every execution to be published again")
        # the originals arrive after all, first in line for the worker: they start nothing
        broker.rpush(setup.queue, *originals)
        started.append(worker := Worker(setup))
        worker.wait_ready(service)
        executions = wait_for(
            lambda: (
                len(done := [e for e in all_executions(service) if e.status.is_final]) == JOBS
                and done
            ),
            20,
            "every execution to run",
            every=0.2,
        )
        assert {e.status for e in executions} == {ExecutionStatus.SUCCESS}
        assert not lost & {e.celery_task_id for e in executions}
        wait_for(lambda: broker.llen(setup.queue) == 0, 10, "the queue to drain")
    refused = worker.output().count("published again under another task id")
    assert refused >= JOBS, worker.output()
    starts = collections.Counter(row.execution_id for row in jobs.read_witness(setup.witness))
    assert starts == dict.fromkeys((e.id for e in executions), 1)
    broker.close()
