"""Executions side by side in one worker process (``--pool threads``): their take-overs
and outcomes share writes (``taskmgr.celery.commits``), and still every slot starts
exactly once and every execution ends ``success`` under the worker, counted from the
rows the jobs wrote themselves."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr.core.models import ExecutionStatus
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for_ended, workers
from tests.celery.hostapp import build

pytestmark = pytest.mark.slow

EXECUTIONS = 120


def run_threads(setup: Setup) -> None:
    _, service = build(setup.broker, setup.database, setup.queue)
    at = datetime.now(UTC) + timedelta(seconds=1)
    for i in range(EXECUTIONS):
        # half sync, half ``async def``: both run on the worker's threads
        func = jobs.witness if i % 2 else jobs.witness_async
        service.create_job(f"job-{i:03d}", func, at=at, misfire_grace_time=3600)
    with workers() as started:
        worker = Worker(setup, pool="threads", concurrency=8)
        started.append(worker)
        worker_id = worker.wait_ready(service)
        service.start()
        try:
            wait_for_ended(service, EXECUTIONS, 60, "every execution to end", every=0.25)
        finally:
            service.shutdown()
        executions = all_executions(service)
        service.close()

    assert collections.Counter(e.status for e in executions) == {
        ExecutionStatus.SUCCESS: EXECUTIONS
    }
    assert {e.owner for e in executions} == {worker_id}
    assert all(e.started_at is not None and e.completed_at is not None for e in executions)
    starts = jobs.read_witness(setup.witness)
    per_slot = collections.Counter((row.job_key, row.scheduled_for) for row in starts)
    assert len(per_slot) == EXECUTIONS
    assert set(per_slot.values()) == {1}, "a slot was started more than once"
    assert {row.execution_id for row in starts} == {e.id for e in executions}
    assert len({row.pid for row in starts}) == 1  # one process, several threads


def test_a_threads_worker_over_redis(redis_setup: Setup) -> None:
    run_threads(redis_setup)


def test_a_threads_worker_over_rabbitmq(amqp_setup: Setup) -> None:
    run_threads(amqp_setup)
