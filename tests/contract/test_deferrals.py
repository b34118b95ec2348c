"""Contract: deferred runs are written all at once or not at all, one per idempotency
key, and only from the job version they were prepared from when one is given."""

from __future__ import annotations

import pytest

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, Job
from taskmgr.exceptions import ConflictError, JobNotFoundError, VersionConflictError
from taskmgr.storage.base import ExecutionFilter, NewExecution, Storage

from .helpers import T0, add_job, new_execution, outcome, running


def deferred(job: Job, key: str | None = None) -> NewExecution:
    return new_execution(
        job, trigger=ExecutionTrigger.DEFERRED, due_at=T0, idempotency_key=key, kwargs={"n": 1}
    )


def stored_ids(storage: Storage) -> set[str]:
    return {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}


def test_all_runs_are_written_in_order(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    news = [deferred(job) for _ in range(3)]
    written = storage.defer_executions(news)
    assert [e.id for e in written] == [n.id for n in news]
    assert {e.status for e in written} == {ExecutionStatus.PENDING}
    assert stored_ids(storage) == {n.id for n in news}


def test_a_held_key_returns_the_first_run(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    [first] = storage.defer_executions([deferred(job, "k")])
    again, other = storage.defer_executions([deferred(job, "k"), deferred(job, "other")])
    assert again.id == first.id
    assert stored_ids(storage) == {first.id, other.id}


def test_two_runs_of_one_batch_with_one_key_write_nothing(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    with pytest.raises(ConflictError):
        storage.defer_executions([deferred(job), deferred(job, "k"), deferred(job, "k")])
    assert stored_ids(storage) == set()


def test_a_missing_job_writes_nothing(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    storage.delete_job("task", now=T0)
    with pytest.raises(JobNotFoundError):
        storage.defer_executions([deferred(job)])
    assert stored_ids(storage) == set()


def test_the_version_prepared_from_must_still_hold(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    news = [deferred(job), deferred(job, "k")]
    written = storage.defer_executions(news, job_versions={job.id: job.version})
    assert len(written) == 2

    changed = storage.update_job("task", {"max_retries": 2}, now=T0)
    assert changed.version == job.version + 1
    with pytest.raises(VersionConflictError):
        storage.defer_executions([deferred(job), deferred(job, "k2")], job_versions={job.id: 1})
    assert stored_ids(storage) == {n.id for n in news}


def test_a_version_of_a_job_that_is_gone_is_a_conflict(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    storage.delete_job("task", now=T0)
    # checked before the job's existence: the caller reads the job again and learns
    with pytest.raises(VersionConflictError):
        storage.defer_executions([deferred(job)], job_versions={job.id: job.version})
    assert stored_ids(storage) == set()


TRACE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "vendor=value",
}


def test_the_trace_context_of_a_run_is_kept_and_its_retry_keeps_it(storage: Storage) -> None:
    job = add_job(storage, "task", next_run_at=None)
    # one run (on PostgreSQL, the one-statement defer), a batch, and a manual run
    [single] = storage.defer_executions([deferred_with(job, TRACE)], job_versions={job.id: 1})
    batch = storage.defer_executions([deferred_with(job, TRACE), deferred_with(job, None)])
    manual = storage.add_execution(new_execution(job, trace_context=TRACE))
    for written in (single, batch[0], manual):
        assert written.trace_context == TRACE
        assert storage.get_execution(written.id).trace_context == TRACE
    assert storage.get_execution(batch[1].id).trace_context is None

    run = storage.add_execution(running(job, "o", trace_context=TRACE))
    retry = new_execution(job, attempt=2, due_at=T0, chain_id=run.id, trace_context=TRACE)
    failed = outcome(run, "o", status=ExecutionStatus.FAILED, retry=retry)
    assert storage.record_outcomes([failed]) == [True]
    assert storage.get_execution(retry.id).trace_context == TRACE


def deferred_with(job: Job, trace_context: dict[str, str] | None) -> NewExecution:
    return new_execution(
        job,
        trigger=ExecutionTrigger.DEFERRED,
        due_at=T0,
        kwargs={"n": 1},
        trace_context=trace_context,
    )
