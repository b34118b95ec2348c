"""Contract: manual runs, fenced outcomes, history queries and retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.models import ExecutionStatus, ExecutionTrigger
from taskmgr.exceptions import (
    ExecutionNotFoundError,
    InvalidInputError,
    JobBusyError,
    JobNotFoundError,
    VersionConflictError,
)
from taskmgr.storage.base import AuditFilter, AuditRecord, ExecutionFilter, Storage

from .helpers import MINUTE, T0, add_job, new_execution, outcome, running

OWNER = "instance-a"
SECOND = timedelta(seconds=1)


def test_add_and_get_execution(storage: Storage) -> None:
    job = add_job(storage, "manual")
    new = new_execution(
        job,
        scheduled_for=T0,
        due_at=T0 + SECOND,
        actor="alice",
        kwargs={"x": [1, 2]},
        trigger=ExecutionTrigger.MANUAL,
    )
    stored = storage.add_execution(new)
    assert stored.id == new.id
    assert stored.status is ExecutionStatus.PENDING
    assert stored.actor == "alice"
    assert stored.kwargs == {"x": [1, 2]}
    assert stored.due_at == T0 + SECOND
    assert storage.get_execution(new.id) == stored


def test_get_missing_execution(storage: Storage) -> None:
    with pytest.raises(ExecutionNotFoundError) as info:
        storage.get_execution("no-such-id")
    assert info.value.execution_id == "no-such-id"


def test_add_execution_for_a_missing_job(storage: Storage) -> None:
    job = add_job(storage, "short-lived")
    storage.delete_job("short-lived", now=T0)
    new = new_execution(job)
    with pytest.raises(JobNotFoundError):
        storage.add_execution(new)
    with pytest.raises(ExecutionNotFoundError):
        storage.get_execution(new.id)


def test_add_execution_only_from_the_job_version_it_was_prepared_from(
    storage: Storage,
) -> None:
    job = add_job(storage, "manual")
    trigger = AuditRecord(action=AuditAction.TRIGGER, source=AuditSource.API, at=T0)
    first = storage.add_execution(new_execution(job), job_version=job.version, audit=trigger)
    assert storage.get_execution(first.id).job_key == "manual"

    storage.update_job("manual", {"kwargs": {"n": 2}}, now=T0)  # version 2 now
    stale = new_execution(job, scheduled_for=T0 + SECOND)
    with pytest.raises(VersionConflictError):
        storage.add_execution(stale, job_version=job.version, audit=trigger, max_active=5)
    with pytest.raises(ExecutionNotFoundError):
        storage.get_execution(stale.id)
    triggers = storage.list_audit(AuditFilter(actions=[AuditAction.TRIGGER]), limit=10)
    assert len(triggers) == 1  # nothing of the refused one was written

    storage.delete_job("manual", now=T0)
    gone = new_execution(job, scheduled_for=T0 + 2 * SECOND)
    with pytest.raises(VersionConflictError):  # the caller reads the job again and learns
        storage.add_execution(gone, job_version=job.version + 1)
    with pytest.raises(ExecutionNotFoundError):
        storage.get_execution(gone.id)


def test_add_execution_max_active(storage: Storage) -> None:
    job = add_job(storage, "limited", max_instances=2)
    storage.add_execution(running(job, OWNER, scheduled_for=T0 - MINUTE))
    storage.add_execution(new_execution(job, scheduled_for=T0 - 2 * MINUTE, queued=True))
    first = storage.add_execution(new_execution(job, scheduled_for=T0), max_active=2)
    assert first.status is ExecutionStatus.PENDING

    refused = new_execution(job, scheduled_for=T0 + SECOND)
    with pytest.raises(JobBusyError):
        storage.add_execution(refused, max_active=2)
    with pytest.raises(ExecutionNotFoundError):
        storage.get_execution(refused.id)
    # Without a limit (overlap policy "allow") it goes in.
    storage.add_execution(refused)
    assert storage.get_execution(refused.id).status is ExecutionStatus.PENDING


def test_record_outcomes_is_fenced_by_owner_and_status(storage: Storage) -> None:
    job = add_job(storage, "fenced", max_retries=1)
    mine = storage.add_execution(running(job, OWNER, scheduled_for=T0))
    theirs = storage.add_execution(running(job, "instance-b", scheduled_for=T0 - MINUTE))
    pending = storage.add_execution(new_execution(job, scheduled_for=T0 - 2 * MINUTE))

    result = storage.record_outcomes(
        [
            outcome(
                mine,
                OWNER,
                status=ExecutionStatus.FAILED,
                error_type="ValueError",
                error_message="bad",
                traceback="Traceback ...",
                result_summary=None,
            ),
            outcome(theirs, OWNER),  # wrong owner
            outcome(pending, OWNER),  # not running
        ]
    )
    assert result == [True, False, False]

    done = storage.get_execution(mine.id)
    assert done.status is ExecutionStatus.FAILED
    assert done.started_at == T0 + SECOND
    assert done.completed_at == T0 + 2 * SECOND
    assert done.duration_ms == 1000
    assert (done.error_type, done.error_message, done.traceback) == (
        "ValueError",
        "bad",
        "Traceback ...",
    )
    assert done.owner == OWNER
    assert storage.get_execution(theirs.id) == theirs
    assert storage.get_execution(pending.id) == pending

    # A second write for the same execution (e.g. a late timeout) is rejected.
    assert storage.record_outcomes([outcome(mine, OWNER, status=ExecutionStatus.TIMEOUT)]) == [
        False
    ]
    assert storage.get_execution(mine.id) == done
    assert storage.record_outcomes([outcome(new_execution(job), OWNER)]) == [False]
    assert storage.record_outcomes([]) == []


def test_two_outcomes_for_one_execution_in_one_call(storage: Storage) -> None:
    job = add_job(storage, "double")
    run = storage.add_execution(running(job, OWNER))
    assert storage.record_outcomes(
        [outcome(run, OWNER), outcome(run, OWNER, status=ExecutionStatus.FAILED)]
    ) == [True, False]
    assert storage.get_execution(run.id).status is ExecutionStatus.SUCCESS


def test_retry_is_inserted_only_when_the_outcome_applies(storage: Storage) -> None:
    job = add_job(storage, "retry", max_retries=3)
    run = storage.add_execution(running(job, OWNER))
    lost_run = storage.add_execution(running(job, "dead-owner", scheduled_for=T0 - MINUTE))
    retry = new_execution(
        job, scheduled_for=T0, attempt=2, trigger=ExecutionTrigger.RETRY, due_at=T0 + MINUTE
    )
    ignored = new_execution(
        job, scheduled_for=T0 - MINUTE, attempt=2, trigger=ExecutionTrigger.RETRY
    )
    result = storage.record_outcomes(
        [
            outcome(run, OWNER, status=ExecutionStatus.FAILED, retry=retry),
            outcome(lost_run, OWNER, status=ExecutionStatus.FAILED, retry=ignored),
        ]
    )
    assert result == [True, False]
    stored = storage.get_execution(retry.id)
    assert stored.status is ExecutionStatus.PENDING
    assert stored.attempt == 2
    assert stored.due_at == T0 + MINUTE
    assert stored.trigger is ExecutionTrigger.RETRY
    with pytest.raises(ExecutionNotFoundError):
        storage.get_execution(ignored.id)


def test_result_summary_round_trips(storage: Storage) -> None:
    job = add_job(storage, "summary")
    run = storage.add_execution(running(job, OWNER))
    summary = {"rows": 3, "names": ["a", "ü"], "nested": {"ok": True, "none": None}}
    assert storage.record_outcomes([outcome(run, OWNER, result_summary=summary)]) == [True]
    assert storage.get_execution(run.id).result_summary == summary


def _history(storage: Storage) -> list[str]:
    """Eight executions; created_at ties in pairs, so the id breaks them."""
    a = add_job(storage, "a")
    b = add_job(storage, "b")
    ids = []
    for n in range(8):
        job = a if n % 2 == 0 else b
        status = [ExecutionStatus.SUCCESS, ExecutionStatus.FAILED, ExecutionStatus.PENDING][n % 3]
        new = new_execution(
            job,
            id=f"exec-{n:02d}",
            scheduled_for=T0 + n * MINUTE,
            created_at=T0 + (n // 2) * SECOND,
            status=status,
            completed_at=None if status is ExecutionStatus.PENDING else T0 + n * MINUTE,
        )
        ids.append(storage.add_execution(new).id)
    return ids


def test_list_executions_newest_first_with_keyset_pagination(storage: Storage) -> None:
    _history(storage)
    everything = storage.list_executions(ExecutionFilter(), limit=100)
    order = [e.id for e in everything]
    assert order == [f"exec-{n:02d}" for n in reversed(range(8))]

    pages: list[str] = []
    before = None
    while True:
        page = storage.list_executions(ExecutionFilter(), limit=3, before=before)
        if not page:
            break
        assert len(page) <= 3
        pages += [e.id for e in page]
        before = (page[-1].created_at, page[-1].id)
    assert pages == order

    # A page boundary inside a created_at tie.
    tie = storage.list_executions(ExecutionFilter(), limit=10, before=(T0 + 2 * SECOND, "exec-05"))
    assert [e.id for e in tie] == ["exec-04", "exec-03", "exec-02", "exec-01", "exec-00"]


def test_list_executions_filters(storage: Storage) -> None:
    _history(storage)

    def ids(**filters: object) -> list[str]:
        found = storage.list_executions(ExecutionFilter(**filters), limit=100)  # type: ignore[arg-type]
        return sorted(e.id for e in found)

    assert ids(job_key="a") == ["exec-00", "exec-02", "exec-04", "exec-06"]
    assert ids(statuses=[ExecutionStatus.PENDING]) == ["exec-02", "exec-05"]
    assert ids(statuses=[ExecutionStatus.SUCCESS, ExecutionStatus.FAILED], job_key="b") == [
        "exec-01",
        "exec-03",
        "exec-07",
    ]
    # since/until bound scheduled_for, inclusive.
    assert ids(since=T0 + 2 * MINUTE, until=T0 + 4 * MINUTE) == ["exec-02", "exec-03", "exec-04"]
    assert ids(since=T0 + 6 * MINUTE) == ["exec-06", "exec-07"]
    assert ids(until=T0) == ["exec-00"]
    assert ids(job_key="nobody") == []
    assert len(storage.list_executions(ExecutionFilter(), limit=2)) == 2


def test_list_executions_by_trigger_and_chain(storage: Storage) -> None:
    job = add_job(storage, "chains")
    first = storage.add_execution(
        new_execution(job, id="run-1", status=ExecutionStatus.FAILED, completed_at=T0)
    )
    retry = storage.add_execution(
        new_execution(
            job,
            id="run-1-retry",
            attempt=2,
            chain_id=first.id,
            trigger=ExecutionTrigger.RETRY,
            created_at=T0 + SECOND,
        )
    )
    other = storage.add_execution(
        new_execution(job, id="other", trigger=ExecutionTrigger.DEFERRED, created_at=T0 + SECOND)
    )

    def ids(**filters: object) -> list[str]:
        found = storage.list_executions(ExecutionFilter(**filters), limit=100)  # type: ignore[arg-type]
        return [e.id for e in found]

    assert ids(triggers=[ExecutionTrigger.RETRY]) == [retry.id]
    assert ids(triggers=["manual", "deferred"]) == [other.id, first.id]  # values: the members
    assert ids(chain_id=first.id) == [retry.id, first.id]
    assert ids(chain_id=first.id, statuses=[ExecutionStatus.FAILED]) == [first.id]
    assert ids(chain_id="nobody") == []
    for bad in ({"triggers": ["bogus"]}, {"chain_id": ""}, {"chain_id": 7}):
        with pytest.raises(InvalidInputError):
            ids(**bad)


def test_delete_finished_executions(storage: Storage) -> None:
    job = add_job(storage, "retention")
    old = []
    for n, status in enumerate(
        [
            ExecutionStatus.SUCCESS,
            ExecutionStatus.FAILED,
            ExecutionStatus.MISSED,
            ExecutionStatus.SKIPPED,
            ExecutionStatus.LOST,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.TIMEOUT,
        ]
    ):
        new = new_execution(
            job,
            scheduled_for=T0 + n * MINUTE,
            status=status,
            completed_at=T0 + n * SECOND,
        )
        old.append(storage.add_execution(new).id)
    recent = storage.add_execution(
        new_execution(
            job,
            scheduled_for=T0 - MINUTE,
            status=ExecutionStatus.SUCCESS,
            completed_at=T0 + MINUTE,
        )
    )
    active = [
        storage.add_execution(new_execution(job, scheduled_for=T0 - 2 * MINUTE)).id,
        storage.add_execution(running(job, OWNER, scheduled_for=T0 - 3 * MINUTE)).id,
    ]
    cutoff = T0 + MINUTE  # exclusive: "recent" completed exactly then

    assert storage.delete_finished_executions(completed_before=cutoff, limit=3) == 3
    remaining = {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}
    assert remaining == {*old[3:], recent.id, *active}  # the oldest went first

    assert storage.delete_finished_executions(completed_before=cutoff, limit=100) == 4
    assert storage.delete_finished_executions(completed_before=cutoff, limit=100) == 0
    remaining = {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}
    assert remaining == {recent.id, *active}

    # Far in the future: still never pending or running.
    assert storage.delete_finished_executions(completed_before=T0 + 1000 * MINUTE, limit=100) == 1
    remaining = {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}
    assert remaining == set(active)


def test_delete_finished_executions_by_status(storage: Storage) -> None:
    job = add_job(storage, "retention-status")
    ids: dict[ExecutionStatus, str] = {}
    for n, status in enumerate(
        [ExecutionStatus.SUCCESS, ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT]
    ):
        new = new_execution(
            job, scheduled_for=T0 + n * MINUTE, status=status, completed_at=T0 + n * SECOND
        )
        ids[status] = storage.add_execution(new).id
    active = storage.add_execution(running(job, OWNER, scheduled_for=T0 - MINUTE)).id
    far = T0 + 1000 * MINUTE

    assert storage.delete_finished_executions(completed_before=far, limit=10, statuses=()) == 0
    # asking for running is ignored: never deleted
    running_only = [ExecutionStatus.RUNNING, ExecutionStatus.PENDING]
    assert (
        storage.delete_finished_executions(completed_before=far, limit=10, statuses=running_only)
        == 0
    )
    kept_failures = [ExecutionStatus.SUCCESS]
    assert (
        storage.delete_finished_executions(completed_before=far, limit=10, statuses=kept_failures)
        == 1
    )
    remaining = {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}
    assert remaining == {ids[ExecutionStatus.FAILED], ids[ExecutionStatus.TIMEOUT], active}
    failures = [ExecutionStatus.FAILED, ExecutionStatus.TIMEOUT]
    assert storage.delete_finished_executions(completed_before=far, limit=1, statuses=failures) == 1
    remaining = {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}
    assert remaining == {ids[ExecutionStatus.TIMEOUT], active}  # oldest first


def test_history_summary(storage: Storage) -> None:
    assert storage.history_summary().counts == {}
    a, b = add_job(storage, "summary-a"), add_job(storage, "summary-b")
    rows = [
        (a, ExecutionStatus.SUCCESS, T0 + SECOND),
        (a, ExecutionStatus.SUCCESS, T0 + 5 * SECOND),
        (a, ExecutionStatus.FAILED, T0 + 9 * SECOND),
        (b, ExecutionStatus.MISSED, T0 + 2 * SECOND),
    ]
    for n, (job, status, completed) in enumerate(rows):
        storage.add_execution(
            new_execution(job, scheduled_for=T0 + n * MINUTE, status=status, completed_at=completed)
        )
    storage.add_execution(running(a, OWNER, scheduled_for=T0 + 10 * MINUTE))

    summary = storage.history_summary()
    assert dict(summary.counts) == {
        ("summary-a", ExecutionStatus.SUCCESS): 2,
        ("summary-a", ExecutionStatus.FAILED): 1,
        ("summary-a", ExecutionStatus.RUNNING): 1,
        ("summary-b", ExecutionStatus.MISSED): 1,
    }
    assert dict(summary.last_success) == {"summary-a": T0 + 5 * SECOND}


def test_a_batch_of_outcomes_writes_each_row_its_own_values(storage: Storage) -> None:
    """Several outcomes in one call (one statement on PostgreSQL): every field of every
    row is its own, a fenced-out one changes nothing."""
    job = add_job(storage, "batch")
    runs = [
        storage.add_execution(running(job, "me", scheduled_for=T0 + i * MINUTE)) for i in range(4)
    ]
    theirs = storage.add_execution(running(job, "them", scheduled_for=T0 + 9 * MINUTE))
    outcomes = [
        outcome(runs[0], "me", result_summary={"rows": [1, 2], "note": "é\u2028"}),
        outcome(
            runs[1],
            "me",
            status=ExecutionStatus.FAILED,
            error_type="ValueError",
            error_message="bad 'input'\nline two",
            traceback="Traceback (most recent call last): ...",
        ),
        outcome(runs[2], "me", status=ExecutionStatus.TIMEOUT, result_summary=None),
        outcome(runs[3], "me", result_summary="plain text", completed_at=T0 + 3 * MINUTE),
        outcome(theirs, "me"),  # not ours: fenced out
    ]
    assert storage.record_outcomes(outcomes) == [True, True, True, True, False]
    for written in outcomes[:4]:
        row = storage.get_execution(written.execution_id)
        assert row.status is written.status
        assert (row.started_at, row.completed_at) == (written.started_at, written.completed_at)
        assert row.duration_ms == written.duration_ms
        assert (row.error_type, row.error_message, row.traceback) == (
            written.error_type,
            written.error_message,
            written.traceback,
        )
        assert row.result_summary == written.result_summary
    assert storage.get_execution(theirs.id) == theirs
