"""200 scheduled executions through a real broker to a real worker (prefork, two
processes): every one ends ``success`` on the worker, and every slot was started
exactly once, counted from the rows the jobs wrote themselves."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr.core.models import ExecutionStatus
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for_ended, workers
from tests.celery.hostapp import build

pytestmark = pytest.mark.slow

EXECUTIONS = 200


def run_200(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    events_file = setup.logs / "events.txt"
    monkeypatch.setenv("TASKMGR_CELERY_TEST_EVENTS", str(events_file))  # the worker's env
    _, service = build(setup.broker, setup.database, setup.queue)
    at = datetime.now(UTC) + timedelta(seconds=1)
    for i in range(EXECUTIONS):
        # half sync, half ``async def``: both run on the worker
        func = jobs.witness if i % 2 else jobs.witness_async
        service.create_job(f"job-{i:03d}", func, at=at, misfire_grace_time=3600)
    with workers() as started:
        worker = Worker(setup, pool="prefork", concurrency=2)
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
    assert all(e.celery_task_id for e in executions)
    assert len({e.celery_task_id for e in executions}) == EXECUTIONS
    assert {e.result_summary for e in executions} == {"ok", "ok-async"}

    starts = jobs.read_witness(setup.witness)
    per_slot = collections.Counter((row.job_key, row.scheduled_for) for row in starts)
    assert len(per_slot) == EXECUTIONS
    assert set(per_slot.values()) == {1}, "a slot was started more than once"
    assert {row.execution_id for row in starts} == {e.id for e in executions}
    assert len({row.pid for row in starts}) <= 2  # the two pool processes

    # the host's listeners ran in the worker's pool processes, once per run
    ids = {e.id for e in executions}
    lines = [line.split() for line in events_file.read_text().splitlines()]
    assert {execution_id for _, execution_id in lines} == ids
    assert collections.Counter(kind for kind, _ in lines) == {
        "started": EXECUTIONS,
        "succeeded": EXECUTIONS,
    }


def test_200_executions_over_redis(redis_setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    run_200(redis_setup, monkeypatch)


def test_200_executions_over_rabbitmq(amqp_setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    run_200(amqp_setup, monkeypatch)
