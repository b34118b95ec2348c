"""Deferred tasks on a real Celery worker: the runs are published once their rows are
committed, run with their arguments on the worker (never in the deferring process),
retried there, and recorded in the same history as everything else."""

from __future__ import annotations

import collections

import pytest

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for_ended, workers
from tests.celery.hostapp import build

pytestmark = pytest.mark.slow

RUNS = 20


def test_deferred_runs_execute_on_the_worker_with_their_arguments(redis_setup: Setup) -> None:
    _, service = build(redis_setup.broker, redis_setup.database, redis_setup.queue)
    service.create_job("tasks.echo", jobs.echo)
    service.create_job("tasks.flaky", jobs.fail_first, max_retries=1, retry_backoff=(0.1, 0.1, 0))
    service.create_job("tasks.nul", jobs.fail_nul)
    with workers() as started:
        worker = Worker(redis_setup)
        started.append(worker)
        worker_id = worker.wait_ready(service)
        service.start()
        try:
            deferred = service.defer_many("tasks.echo", [{"n": n} for n in range(RUNS - 1)])
            deferred.append(service.defer("tasks.echo", n=RUNS - 1, text="last"))
            flaky = service.defer("tasks.flaky", n=7)
            nul = service.defer("tasks.nul")
            keyed = service.defer("tasks.echo", idempotency_key="once", n=99)
            assert service.defer("tasks.echo", idempotency_key="once", n=100).id == keyed.id
            # RUNS + the keyed one, the flaky task's two attempts and the NUL one
            wait_for_ended(service, RUNS + 4, 60, "every deferred run to end", every=0.2)
        finally:
            service.shutdown()
        executions = all_executions(service)
        service.close()

    by_id = {e.id: e for e in executions}
    assert [by_id[e.id].result_summary for e in deferred] == [
        {"n": n, "text": "last" if n == RUNS - 1 else ""} for n in range(RUNS)
    ]
    assert by_id[keyed.id].result_summary == {"n": 99, "text": ""}
    chain = sorted((e for e in executions if e.chain_id == flaky.id), key=lambda e: e.attempt)
    assert [(e.attempt, e.status, e.trigger) for e in chain] == [
        (1, ExecutionStatus.FAILED, ExecutionTrigger.DEFERRED),
        (2, ExecutionStatus.SUCCESS, ExecutionTrigger.RETRY),
    ]
    assert chain[1].result_summary == 7 and chain[1].kwargs == {"n": 7}
    # the worker stores what any database accepts: NUL replaced
    failed = by_id[nul.id]
    assert (failed.status, failed.error_message) == (ExecutionStatus.FAILED, "a\ufffdb")
    assert {e.owner for e in executions} == {worker_id}  # none ran in this process

    starts = collections.Counter(row.execution_id for row in jobs.read_witness(redis_setup.witness))
    assert set(starts) == set(by_id)
    assert set(starts.values()) == {1}
