"""History retention runs as a job while the service keeps firing."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from taskmgr import ExecutionStatus, SchedulerService
from taskmgr.prometheus import TaskmgrCollector
from taskmgr.scheduling.retention import RETENTION_KEY
from taskmgr.storage.base import ExecutionFilter, NewExecution
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from tests.contract.helpers import add_job, new_execution
from tests.ops import jobs

TICK = "tests.ops.jobs.tick"


def seed(storage: SQLAlchemyStorage, now: datetime) -> tuple[set[str], set[str]]:
    """Old and recent history of an unrelated job: (ids to delete, ids to keep)."""
    job = add_job(storage, "history")
    doomed, kept = set(), set()
    cases = [
        (ExecutionStatus.SUCCESS, 40, 700, doomed),
        (ExecutionStatus.MISSED, 31, 100, doomed),
        (ExecutionStatus.SUCCESS, 29, 50, kept),
        (ExecutionStatus.FAILED, 40, 50, kept),  # failures are kept 90 days
        (ExecutionStatus.TIMEOUT, 91, 50, doomed),
        (ExecutionStatus.LOST, 89, 20, kept),
    ]
    n = 0
    for status, days, count, into in cases:
        for _ in range(count):
            n += 1
            completed = now - timedelta(days=days, seconds=n)
            row: NewExecution = new_execution(
                job, scheduled_for=completed, status=status, completed_at=completed
            )
            into.add(storage.add_execution(row).id)
    return doomed, kept


def test_retention_deletes_old_rows_while_firing(tmp_path: Path) -> None:
    storage = SQLAlchemyStorage(f"sqlite:///{tmp_path / 'retention.db'}")
    storage.open()
    doomed, kept = seed(storage, datetime.now(UTC))
    service = SchedulerService(storage, jobs=[jobs.tick], poll_interval=0.2)
    service.set_retention(30, failed_days=90, every=1, batch_size=50)
    registry = CollectorRegistry()
    TaskmgrCollector(service, registry=registry)
    service.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            left = {
                e.id
                for e in storage.list_executions(ExecutionFilter(job_key="history"), limit=2000)
            }
            if not left & doomed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(2.5)  # more slots of both jobs after the deletes
        assert registry.get_sample_value("taskmgr_instances_live") == 1
    finally:
        service.shutdown()

    assert left == kept  # exactly the old rows went, none of the others
    # On a busy machine a slot may come while the previous run still works (skipped)
    # or start past its grace (missed): the point is that nothing failed or doubled.
    ran = {ExecutionStatus.SUCCESS}
    waited = {ExecutionStatus.SKIPPED, ExecutionStatus.MISSED}
    runs = [
        e
        for e in storage.list_executions(ExecutionFilter(job_key=RETENTION_KEY), limit=100)
        if e.status not in waited
    ]
    assert runs and all(e.status in ran for e in runs)
    assert sum(e.result_summary["deleted"] for e in runs) == 800  # type: ignore[index]
    assert sum(e.result_summary["deleted_failures"] for e in runs) == 50  # type: ignore[index]
    for key in (TICK, RETENTION_KEY):
        fired = storage.list_executions(ExecutionFilter(job_key=key), limit=1000)
        slots = sorted(e.scheduled_for for e in fired)
        assert len(slots) >= 3
        assert len(set(slots)) == len(slots)  # no duplicate slot
        gaps = {b - a for a, b in itertools.pairwise(slots)}
        assert gaps == {timedelta(seconds=1)}  # no missed slot
        assert {e.status for e in fired} <= ran | waited
        assert sum(e.status in ran for e in fired) >= 3
    storage.close()
