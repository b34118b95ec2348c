"""Contract: a claim with a look-ahead reads the jobs due up to ``now + lookahead`` (its
``horizon``), still judges everything else at ``now``, and a slot claimed ahead is one
row, claimed once, whoever claims."""

from __future__ import annotations

from datetime import timedelta

from taskmgr.core.models import ExecutionStatus
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.base import ExecutionFilter, Storage

from .helpers import MINUTE, T0, Recorder, add_job, fire_all, new_execution

MS = timedelta(milliseconds=1)


def test_the_horizon_reads_jobs_due_within_the_look_ahead_only(storage: Storage) -> None:
    add_job(storage, "now", next_run_at=T0)
    add_job(storage, "soon", next_run_at=T0 + 40 * MS)
    add_job(storage, "later", next_run_at=T0 + 60 * MS)
    pending_job = add_job(storage, "pending", next_run_at=None)
    storage.add_execution(new_execution(pending_job, scheduled_for=T0 + 10 * MS))

    planner = Recorder()
    storage.claim(now=T0, owner="a", limit=10, planner=planner, lookahead=0.05)
    batch = planner.batch
    assert batch.now == T0
    assert batch.horizon == T0 + 50 * MS
    assert [job.key for job in batch.due_jobs] == ["now", "soon"]
    assert batch.due_pending == []  # pending runs start at their time: no look-ahead


def test_without_a_look_ahead_the_horizon_is_now(storage: Storage) -> None:
    add_job(storage, "soon", next_run_at=T0 + MS)
    planner = Recorder()
    storage.claim(now=T0, owner="a", limit=10, planner=planner)
    assert planner.batch.horizon == T0
    assert planner.batch.due_jobs == []


def test_a_slot_claimed_ahead_is_claimed_once(storage: Storage) -> None:
    job = add_job(storage, "soon", next_run_at=T0 + 30 * MS, func="f")
    first = storage.claim(now=T0, owner="a", limit=10, planner=Planner("a", {"f"}), lookahead=0.05)
    second = storage.claim(
        now=T0 + MS, owner="b", limit=10, planner=Planner("b", {"f"}), lookahead=0.05
    )
    assert [c.execution.scheduled_for for c in first] == [T0 + 30 * MS]
    assert second == []
    [row] = storage.list_executions(ExecutionFilter(job_key="soon"), limit=10)
    assert (row.status, row.owner, row.scheduled_for) == (
        ExecutionStatus.RUNNING,
        "a",
        T0 + 30 * MS,
    )
    assert row.dispatched_at == T0  # claimed (handed to its owner) now, started later
    assert storage.get_job("soon").next_run_at == T0 + 30 * MS + MINUTE
    assert job.id == row.job_id


def test_a_claim_with_a_look_ahead_still_plans_with_fire_all(storage: Storage) -> None:
    """The horizon widens what is read, nothing else: a planner that runs every due job
    gets the ahead ones too, and the compare-and-set applies as always."""
    add_job(storage, "soon", next_run_at=T0 + 30 * MS)
    claimed = storage.claim(now=T0, owner="a", limit=10, planner=fire_all, lookahead=0.05)
    assert [c.job.key for c in claimed] == ["soon"]
