"""Executions side by side in one worker process (``--pool threads``): their take-overs
and outcomes share writes (``taskmgr.celery.commits``), and still every slot starts
exactly once and every execution ends ``success`` under the worker, counted from the
rows the jobs wrote themselves."""

from __future__ import annotations

import collections

import pytest

from taskmgr.core.models import ExecutionStatus
from tests.celery.harness import Setup, run_one_shots

pytestmark = pytest.mark.slow

EXECUTIONS = 120


def run_threads(setup: Setup) -> None:
    run = run_one_shots(setup, EXECUTIONS, pool="threads", concurrency=8)
    executions, worker_id = run.executions, run.worker_id

    assert collections.Counter(e.status for e in executions) == {
        ExecutionStatus.SUCCESS: EXECUTIONS
    }
    assert {e.owner for e in executions} == {worker_id}
    assert all(e.started_at is not None and e.completed_at is not None for e in executions)
    starts = run.starts
    per_slot = collections.Counter((row.job_key, row.scheduled_for) for row in starts)
    assert len(per_slot) == EXECUTIONS
    assert set(per_slot.values()) == {1}, "a slot was started more than once"
    assert {row.execution_id for row in starts} == {e.id for e in executions}
    assert len({row.pid for row in starts}) == 1  # one process, several threads


def test_a_threads_worker_over_redis(redis_setup: Setup) -> None:
    run_threads(redis_setup)


def test_a_threads_worker_over_rabbitmq(amqp_setup: Setup) -> None:
    run_threads(amqp_setup)
