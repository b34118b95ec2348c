"""Contract: the audit log. Each change given an ``AuditRecord`` writes its entry in the
same transaction (the entry exists if and only if the change does), listed newest
first; and a job's own history retention, stored and honoured by the deletes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import taskmgr.storage.memory.jobs
import taskmgr.storage.memory.store
import taskmgr.storage.sqlalchemy.executions
import taskmgr.storage.sqlalchemy.jobs
from taskmgr.core.audit import AuditAction, AuditEntry, AuditSource
from taskmgr.core.models import ExecutionStatus, JobState, OverlapPolicy
from taskmgr.exceptions import (
    ConflictError,
    InvalidDatetimeError,
    InvalidInputError,
    InvalidPolicyError,
    JobBusyError,
    JobExistsError,
    JobNotFoundError,
    VersionConflictError,
)
from taskmgr.storage.base import (
    AuditFilter,
    AuditRecord,
    ClaimPlan,
    ExecutionFilter,
    Storage,
)

from .helpers import MINUTE, T0, add_job, definition, new_execution, running


def record(action: AuditAction, *, at: datetime = T0, **fields: Any) -> AuditRecord:
    fields.setdefault("actor", "alice")
    fields.setdefault("source", AuditSource.API)
    return AuditRecord(action=action, at=at, **fields)


def log(storage: Storage, **filters: Any) -> list[AuditEntry]:
    return storage.list_audit(AuditFilter(**filters), limit=1000)


def test_every_change_writes_its_entry_with_it(storage: Storage) -> None:
    job = storage.add_job(
        definition("audited", max_retries=1),
        source="api",
        state=JobState.ACTIVE,
        next_run_at=T0,
        fingerprint=None,
        now=T0,
        audit=record(AuditAction.CREATE, details={"note": "by hand"}),
    )
    storage.update_job(
        "audited",
        {"max_retries": 3, "description": "changed", "queue": None},
        now=T0 + MINUTE,
        audit=record(AuditAction.UPDATE, at=T0 + MINUTE, source=AuditSource.DASHBOARD),
    )
    run = storage.add_execution(
        new_execution(job), audit=record(AuditAction.TRIGGER, details={"force": False})
    )
    storage.cancel_pending(
        run.id, now=T0, message="cancelled", audit=record(AuditAction.CANCEL, actor=None)
    )
    storage.delete_job("audited", now=T0, audit=record(AuditAction.DELETE, source="cli"))

    entries = log(storage)
    assert [e.action for e in entries] == ["delete", "cancel", "trigger", "update", "create"]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    delete, cancel, trigger, update, create = entries
    assert create.details["note"] == "by hand"
    assert create.details["job"]["key"] == "audited"
    assert create.details["job"]["max_retries"] == 1
    assert create.source is AuditSource.API and create.actor == "alice"
    assert create.job_key == "audited" and create.execution_id is None
    # only the fields that changed, before and after (no version, no updated_at)
    assert update.details == {
        "changes": {
            "max_retries": {"before": 1, "after": 3},
            "description": {"before": None, "after": "changed"},
        }
    }
    assert update.at == T0 + MINUTE and update.source is AuditSource.DASHBOARD
    assert (trigger.job_key, trigger.execution_id, trigger.details) == (
        "audited",
        run.id,
        {"force": False},
    )
    assert (cancel.execution_id, cancel.actor) == (run.id, None)
    assert delete.source is AuditSource.CLI
    assert delete.details["job"]["max_retries"] == 3  # the job as it was
    # the log outlives the job
    assert [e.action for e in log(storage, job_key="audited")] == [e.action for e in entries]


def test_a_refused_change_or_one_without_a_record_writes_no_entry(storage: Storage) -> None:
    add_job(storage, "quiet")
    storage.update_job("quiet", {"max_retries": 2}, now=T0)
    storage.delete_job("quiet", now=T0)
    job = add_job(storage, "busy", max_instances=1, overlap_policy=OverlapPolicy.SKIP)
    with pytest.raises(JobExistsError):
        add_job(storage, "busy", audit=record(AuditAction.CREATE))
    with pytest.raises(VersionConflictError):
        storage.update_job(
            "busy", {"max_retries": 2}, now=T0, expected_version=9, audit=record(AuditAction.UPDATE)
        )
    with pytest.raises(InvalidPolicyError):
        storage.update_job("busy", {"max_retries": -1}, now=T0, audit=record(AuditAction.UPDATE))
    with pytest.raises(JobNotFoundError):
        storage.delete_job("nope", now=T0, audit=record(AuditAction.DELETE))
    storage.add_execution(running(job, "i1"))
    with pytest.raises(JobBusyError):
        storage.add_execution(new_execution(job), max_active=1, audit=record(AuditAction.TRIGGER))
    done = storage.add_execution(
        new_execution(job, status=ExecutionStatus.SUCCESS, completed_at=T0)
    )
    with pytest.raises(ConflictError):
        storage.cancel_pending(done.id, now=T0, message="x", audit=record(AuditAction.CANCEL))
    assert log(storage) == []
    assert storage.get_job("busy").version == 1


#: Records refused, each with its error.
BAD_RECORDS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"at": T0.replace(tzinfo=None)}, InvalidDatetimeError),
    ({"at": datetime(1960, 1, 1, tzinfo=UTC)}, InvalidDatetimeError),
    ({"actor": "x" * 201}, InvalidInputError),
    ({"actor": "nul\x00"}, InvalidInputError),
    ({"source": "carrier-pigeon"}, InvalidInputError),
    ({"action": "rename"}, InvalidInputError),
    ({"details": {"when": T0}}, InvalidInputError),
]


def test_a_bad_record_is_refused_before_anything_is_written(storage: Storage) -> None:
    job = add_job(storage, "kept")
    for bad, error in BAD_RECORDS:
        fields: dict[str, Any] = {"action": AuditAction.CREATE, "at": T0, "source": "api", **bad}
        bad_record = AuditRecord(**fields)
        with pytest.raises(error):
            add_job(storage, "refused", audit=bad_record)
        with pytest.raises(error):
            storage.update_job("kept", {"max_retries": 1}, now=T0, audit=bad_record)
        with pytest.raises(error):
            storage.add_execution(new_execution(job), audit=bad_record)
        with pytest.raises(error):
            storage.record_audit(bad_record)
    assert [j.key for j in storage.list_jobs()] == ["kept"]
    assert storage.get_job("kept").version == 1
    assert storage.list_executions(ExecutionFilter(), limit=10) == []
    assert log(storage) == []


# -- the entry and its change commit or roll back together ----------------------------

#: Where each backend writes an entry, by the module that writes it.
WRITERS = {
    "memory": [
        (taskmgr.storage.memory.jobs, "write_entry"),
        (taskmgr.storage.memory.store, "write_entry"),
    ],
    "sql": [
        (taskmgr.storage.sqlalchemy.jobs, "insert_entry"),
        (taskmgr.storage.sqlalchemy.executions, "insert_entry"),
    ],
}


class BrokenError(Exception):
    pass


def break_writes(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on every entry is written, then its transaction fails (as a crash right
    after the entry's insert would)."""
    for module, name in WRITERS["memory" if backend == "memory" else "sql"]:
        original: Callable[..., Any] = getattr(module, name)

        def write_then_fail(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            _original(*args, **kwargs)
            raise BrokenError

        monkeypatch.setattr(module, name, write_then_fail)


def test_no_entry_without_its_change_and_no_change_without_its_entry(
    storage: Storage, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = add_job(storage, "atomic")
    run = storage.add_execution(new_execution(job))
    break_writes(backend, monkeypatch)
    calls: list[Callable[[], Any]] = [
        lambda: add_job(storage, "created", audit=record(AuditAction.CREATE)),
        lambda: storage.update_job(
            "atomic", {"max_retries": 5}, now=T0, audit=record(AuditAction.UPDATE)
        ),
        lambda: storage.add_execution(new_execution(job), audit=record(AuditAction.TRIGGER)),
        lambda: storage.cancel_pending(
            run.id, now=T0, message="x", audit=record(AuditAction.CANCEL)
        ),
        lambda: storage.delete_job("atomic", now=T0, audit=record(AuditAction.DELETE)),
    ]
    for call in calls:
        with pytest.raises(BrokenError):
            call()
    assert [j.key for j in storage.list_jobs()] == ["atomic"]
    assert storage.get_job("atomic").max_retries == 0
    assert [e.id for e in storage.list_executions(ExecutionFilter(), limit=10)] == [run.id]
    assert storage.get_execution(run.id).status is ExecutionStatus.PENDING
    assert log(storage) == []


# -- listing, standalone entries, retention ---------------------------------------------


def test_the_log_is_listed_newest_first_filtered_and_paged(storage: Storage) -> None:
    for n, (key, action) in enumerate(
        [("a", AuditAction.CREATE), ("b", AuditAction.PAUSE), ("a", AuditAction.PAUSE)]
        + [("a", AuditAction.RESUME)] * 3
    ):
        add_job(storage, f"{key}{n}")  # something to record
        storage.update_job(
            f"{key}{n}",
            {"max_retries": 1},
            now=T0,
            audit=record(action, at=T0 + n * MINUTE, source="python"),
        )
    everything = log(storage)
    assert len(everything) == 6
    ids = [e.id for e in everything]
    assert storage.list_audit(AuditFilter(), limit=2) == everything[:2]
    assert storage.list_audit(AuditFilter(), limit=2, before=ids[1]) == everything[2:4]
    assert storage.list_audit(AuditFilter(), limit=0) == []
    assert [e.job_key for e in log(storage, job_key="b1")] == ["b1"]
    assert {e.action for e in log(storage, actions=["pause"])} == {AuditAction.PAUSE}
    assert len(log(storage, actions=[AuditAction.PAUSE, "create"])) == 3
    window = log(storage, since=T0 + MINUTE, until=T0 + 3 * MINUTE)
    assert [e.at for e in window] == [T0 + 3 * MINUTE, T0 + 2 * MINUTE, T0 + MINUTE]
    with pytest.raises(InvalidInputError, match="action"):
        log(storage, actions=["rename"])
    with pytest.raises(InvalidDatetimeError):
        log(storage, since=T0.replace(tzinfo=None))
    with pytest.raises(InvalidDatetimeError):
        log(storage, until=datetime(9999, 12, 31, tzinfo=UTC))
    for before in (0, -1, True, "3"):
        with pytest.raises(InvalidInputError, match="before"):
            storage.list_audit(AuditFilter(), limit=1, before=before)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="limit"):
        storage.list_audit(AuditFilter(), limit=-1)


def test_standalone_entries_and_their_retention(storage: Storage) -> None:
    made = [
        storage.record_audit(
            record(AuditAction.RETENTION, at=T0 + n * MINUTE, details={"deleted": n})
        )
        for n in range(5)
    ]
    assert [e.details for e in made] == [{"deleted": n} for n in range(5)]
    assert all(e.job_key is None and e.execution_id is None for e in made)
    assert storage.delete_audit(before=T0 + 3 * MINUTE, limit=2) == 2  # oldest first
    assert [e.details["deleted"] for e in log(storage)] == [4, 3, 2]
    assert storage.delete_audit(before=T0 + 3 * MINUTE, limit=10) == 1
    assert storage.delete_audit(before=T0 + 3 * MINUTE, limit=10) == 0
    # ids only grow, even once the newest entries are deleted
    storage.delete_audit(before=T0 + 10 * MINUTE, limit=10)
    again = storage.record_audit(record(AuditAction.RETENTION))
    assert again.id > made[-1].id


def test_a_job_orphaned_by_a_claim_is_in_the_log(storage: Storage) -> None:
    job = add_job(storage, "gone", next_run_at=T0)

    def orphan(batch: Any) -> ClaimPlan:
        return ClaimPlan(orphan_job_ids=[job.id])

    storage.claim(now=T0, owner="i1", limit=10, planner=orphan)
    [entry] = log(storage)
    assert (entry.action, entry.source, entry.actor, entry.job_key) == (
        "update",
        "code",
        None,
        "gone",
    )
    assert entry.details == {"changes": {"state": {"before": "active", "after": "orphaned"}}}
    storage.claim(now=T0, owner="i1", limit=10, planner=orphan)  # already orphaned
    assert len(log(storage)) == 1


# -- a job's own history retention -------------------------------------------------------


def test_a_job_keeps_its_retention(storage: Storage) -> None:
    job = add_job(storage, "noisy", retention=timedelta(days=3))
    assert job.retention == 3 * 86400.0
    assert storage.get_job("noisy").retention == 3 * 86400.0
    add_job(storage, "plain")
    assert [j.key for j in storage.list_jobs(with_retention=True)] == ["noisy"]
    updated = storage.update_job("noisy", {"retention": 60}, now=T0)
    assert updated.retention == 60.0
    assert storage.update_job("noisy", {"retention": None}, now=T0).retention is None
    assert storage.list_jobs(with_retention=True) == []
    for bad in (0, -1, 0.0, float("nan"), timedelta(0), "3 days", True, 1e12):
        with pytest.raises(InvalidPolicyError, match="retention"):
            storage.update_job("noisy", {"retention": bad}, now=T0)
        with pytest.raises(InvalidPolicyError, match="retention"):
            add_job(storage, "refused", retention=bad)
    assert storage.get_job("noisy").version == 3
    assert [j.key for j in storage.list_jobs()] == ["noisy", "plain"]


def test_deletes_by_job_and_by_the_global_retention(storage: Storage) -> None:
    own = add_job(storage, "own", retention=60)
    plain = add_job(storage, "plain")
    old = T0 - timedelta(days=1)
    ids: dict[str, str] = {}
    for job in (own, plain):
        for name, status in (("ok", ExecutionStatus.SUCCESS), ("bad", ExecutionStatus.FAILED)):
            row = new_execution(job, status=status, completed_at=old, scheduled_for=old)
            ids[f"{job.key}.{name}"] = storage.add_execution(row).id
    gone = add_job(storage, "gone", retention=60)  # deleted: its history counts as global
    row = new_execution(gone, status=ExecutionStatus.SUCCESS, completed_at=old, scheduled_for=old)
    ids["gone.ok"] = storage.add_execution(row).id
    storage.delete_job("gone", now=T0)

    def left() -> set[str]:
        stored = {e.id for e in storage.list_executions(ExecutionFilter(), limit=100)}
        return {name for name, i in ids.items() if i in stored}

    # the global retention leaves the job with its own alone
    assert (
        storage.delete_finished_executions(
            completed_before=T0,
            limit=100,
            statuses=[ExecutionStatus.SUCCESS],
            default_retention=True,
        )
        == 2
    )
    assert left() == {"own.ok", "own.bad", "plain.bad"}
    # ... which its own deletes (all final statuses), one job at a time
    assert storage.delete_finished_executions(completed_before=T0, limit=1, job_id=own.id) == 1
    assert storage.delete_finished_executions(completed_before=T0, limit=10, job_id=own.id) == 1
    assert left() == {"plain.bad"}
    assert storage.delete_finished_executions(completed_before=T0, limit=10, job_id=999) == 0
    for bad in (0, True, "1"):
        with pytest.raises(InvalidInputError, match="job_id"):
            storage.delete_finished_executions(
                completed_before=T0,
                limit=10,
                job_id=bad,  # type: ignore[arg-type]
            )
