"""200 scheduled executions through a real broker to a real worker (prefork, two
processes): every one ends ``success`` on the worker, and every slot was started
exactly once, counted from the rows the jobs wrote themselves."""

from __future__ import annotations

import collections

import pytest

from taskmgr.core.models import ExecutionStatus
from tests.celery.harness import Setup, run_one_shots

pytestmark = pytest.mark.slow

EXECUTIONS = 200


def run_200(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    events_file = setup.logs / "events.txt"
    monkeypatch.setenv("TASKMGR_CELERY_TEST_EVENTS", str(events_file))  # the worker's env
    run = run_one_shots(setup, EXECUTIONS, pool="prefork", concurrency=2)
    executions, worker_id = run.executions, run.worker_id

    assert collections.Counter(e.status for e in executions) == {
        ExecutionStatus.SUCCESS: EXECUTIONS
    }
    assert {e.owner for e in executions} == {worker_id}
    assert all(e.celery_task_id for e in executions)
    assert len({e.celery_task_id for e in executions}) == EXECUTIONS
    assert {e.result_summary for e in executions} == {"ok", "ok-async"}

    starts = run.starts
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
