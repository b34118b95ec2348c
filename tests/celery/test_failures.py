"""Failures on real workers: retries that stay taskmgr's, time limits, a killed pool
process and a killed worker. Nothing is left ``running``, nothing completes twice."""

from __future__ import annotations

import collections
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for, wait_for_ended, workers
from tests.celery.hostapp import build

pytestmark = pytest.mark.slow


def soon(seconds: float = 0.5) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_failing_job_is_retried_with_growing_delays_then_fails(redis_setup: Setup) -> None:
    _, service = build(redis_setup.broker, redis_setup.database, redis_setup.queue)
    service.create_job(
        "flaky",
        jobs.fail,
        at=soon(),
        max_retries=2,
        retry_backoff={"base": 0.4, "max": 10, "jitter": 0},
    )
    with workers() as started:
        started.append(worker := Worker(redis_setup))
        worker_id = worker.wait_ready(service)
        with service:
            wait_for_ended(service, 3, 30, "three failed attempts")
        executions = sorted(all_executions(service), key=lambda e: e.attempt)
        service.close()

    assert [e.attempt for e in executions] == [1, 2, 3]
    assert [e.status for e in executions] == [ExecutionStatus.FAILED] * 3
    assert [e.trigger for e in executions] == [
        ExecutionTrigger.SCHEDULE,
        ExecutionTrigger.RETRY,
        ExecutionTrigger.RETRY,
    ]
    assert {e.owner for e in executions} == {worker_id}
    assert {e.scheduled_for for e in executions} == {executions[0].scheduled_for}
    assert all(e.error_type == "builtins.RuntimeError" for e in executions)
    # the retries were persisted as pending attempts due after a growing backoff
    first, second, third = executions
    assert first.completed_at and second.completed_at and second.started_at and third.started_at
    gap1 = (second.started_at - first.completed_at).total_seconds()
    gap2 = (third.started_at - second.completed_at).total_seconds()
    assert second.due_at - first.completed_at == timedelta(seconds=0.4)
    assert third.due_at - second.completed_at == timedelta(seconds=0.8)
    assert 0.4 <= gap1 < gap2
    starts = jobs.read_witness(redis_setup.witness)
    assert sorted(row.attempt for row in starts) == [1, 2, 3]


def test_time_limits_soft_first_then_hard(redis_setup: Setup) -> None:
    _, service = build(redis_setup.broker, redis_setup.database, redis_setup.queue)
    at = soon()
    # timeout 1s: soft limit at 1s, hard limit at 2s (hard_limit_grace=1 in hostapp)
    service.create_job("cooperative", jobs.cooperative, at=at, timeout=1)
    service.create_job("stubborn", jobs.stubborn, at=at, timeout=1)
    service.create_job("after", jobs.witness, at=at + timedelta(seconds=3))
    with workers() as started:
        started.append(worker := Worker(redis_setup, pool="prefork", concurrency=2))
        worker.wait_ready(service)
        with service:
            wait_for_ended(service, 3, 30, "the executions to end")
        by_key = {e.job_key: e for e in all_executions(service)}
        service.close()
        log = worker.output()

    cooperative, stubborn = by_key["cooperative"], by_key["stubborn"]
    assert cooperative.status is ExecutionStatus.TIMEOUT
    assert cooperative.error_message == "did not finish within its timeout of 1.0s"
    assert stubborn.status is ExecutionStatus.TIMEOUT
    assert "hard time limit" in (stubborn.error_message or "")
    assert stubborn.duration_ms is not None and stubborn.duration_ms >= 2000
    notes = collections.Counter(
        (row.job_key, row.note) for row in jobs.read_witness(redis_setup.witness)
    )
    assert notes == {
        ("cooperative", "start"): 1,
        ("cooperative", "soft-limit"): 1,  # the soft limit came first and was seen
        ("stubborn", "start"): 1,
        ("stubborn", "soft-ignored"): 1,  # ignored, so the hard limit killed it
        ("after", "start"): 1,
    }
    assert "Hard time limit (2.0s) exceeded" in log
    assert by_key["after"].status is ExecutionStatus.SUCCESS  # the pool recovered


def test_sigkill_of_the_pool_process_mid_task(redis_setup: Setup, tmp_path: Path) -> None:
    _, service = build(redis_setup.broker, redis_setup.database, redis_setup.queue)
    release = tmp_path / "release"  # the first attempt runs until it is killed
    service.create_job(
        "held",
        jobs.held,
        at=soon(),
        kwargs={"release": str(release)},
        max_retries=1,
        retry_backoff={"base": 0.2, "max": 1, "jitter": 0},
    )
    with workers() as started:
        started.append(worker := Worker(redis_setup, pool="prefork", concurrency=2))
        worker_id = worker.wait_ready(service)
        with service:
            first = wait_for(lambda: jobs.read_witness(redis_setup.witness), 20, "the first start")
            assert first[0].pid != worker.pid  # a pool process, not the main one
            os.kill(first[0].pid, signal.SIGKILL)
            release.touch()
            wait_for_ended(service, 2, 30, "the lost attempt and its retry to end")
        executions = sorted(all_executions(service), key=lambda e: e.attempt)
        service.close()
        # Celery 5.7 keeps the requeued message of the killed process reserved without
        # running it until shutdown (it goes back to the broker then, and is ignored
        # wherever it is delivered next): no need to wait for a warm shutdown
        worker.stop(grace=3)

    lost, retry = executions
    assert lost.status is ExecutionStatus.LOST
    assert "worker process running it ended" in (lost.error_message or "")
    assert retry.status is ExecutionStatus.SUCCESS and retry.trigger is ExecutionTrigger.RETRY
    assert {lost.owner, retry.owner} == {worker_id}
    starts = jobs.read_witness(redis_setup.witness)
    # each attempt started once, whatever happened to the killed one's message
    assert sorted(row.attempt for row in starts) == [1, 2]


def test_sigkill_of_the_whole_worker_then_a_new_one(redis_setup: Setup, tmp_path: Path) -> None:
    _, service = build(redis_setup.broker, redis_setup.database, redis_setup.queue)
    at = soon()
    release = tmp_path / "release"  # the first worker's two runs go on until it is killed
    for i in range(6):
        service.create_job(f"held-{i}", jobs.held, at=at, kwargs={"release": str(release)})
    with workers() as started:
        started.append(first := Worker(redis_setup, pool="prefork", concurrency=2))
        first.wait_ready(service)
        with service:
            wait_for(lambda: len(jobs.read_witness(redis_setup.witness)) >= 2, 20, "two starts")
            first.kill()
            release.touch()
            started.append(second := Worker(redis_setup, pool="prefork", concurrency=2))
            second_id = second.wait_ready(service)
            wait_for_ended(service, 6, 40, "every execution to end", every=0.25)
        executions = all_executions(service)
        service.close()

    starts = jobs.read_witness(redis_setup.witness)
    started_by = collections.defaultdict(list)
    for row in starts:
        started_by[row.execution_id].append(row.pid)
    assert all(len(pids) == 1 for pids in started_by.values()), "an execution started twice"
    killed_pids = {pids[0] for pids in started_by.values()} - {
        row.pid
        for row in starts
        if row.execution_id in {e.id for e in executions if e.owner == second_id}
    }
    statuses = collections.Counter(e.status for e in executions)
    assert set(statuses) <= {ExecutionStatus.SUCCESS, ExecutionStatus.LOST}
    for execution in executions:
        if execution.status is ExecutionStatus.LOST:
            # only what the killed worker had started is lost; nothing else
            assert started_by[execution.id][0] in killed_pids
            assert "is dead" in (execution.error_message or "")
        else:
            assert execution.owner == second_id
    assert statuses == {ExecutionStatus.LOST: 2, ExecutionStatus.SUCCESS: 4}
