"""Contract: fencing a dead owner out of claims, one reaper at a time, instance
retention, the database's clock and change notifications (G3, issue: many processes)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from taskmgr.core.models import ExecutionStatus, InstanceStatus
from taskmgr.storage.base import Storage
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.storage.sqlalchemy.migrate import lock_key
from tests.conftest import OpenStorage

from .helpers import MINUTE, T0, Recorder, add_job, fire_all, instance, running


@pytest.mark.parametrize("status", [InstanceStatus.DEAD, InstanceStatus.STOPPED])
def test_an_owner_that_is_not_running_claims_nothing(
    storage: Storage, status: InstanceStatus
) -> None:
    add_job(storage, "work", next_run_at=T0)
    storage.register_instance(instance("zombie", last_heartbeat=T0))
    storage.set_instance_status("zombie", status)
    assert storage.claim(now=T0, owner="zombie", limit=10, planner=fire_all) == []
    assert storage.get_job("work").next_run_at == T0  # nothing moved
    storage.register_instance(instance("zombie", last_heartbeat=T0))  # registers again
    assert len(storage.claim(now=T0, owner="zombie", limit=10, planner=fire_all)) == 1


def test_delete_instances_keeps_live_and_busy_ones(storage: Storage) -> None:
    job = add_job(storage, "work")
    old = T0 - 10 * MINUTE
    storage.register_instance(instance("live", last_heartbeat=old))
    for name in ("stopped-idle", "dead-busy", "dead-recent"):
        storage.register_instance(
            instance(name, last_heartbeat=old if "recent" not in name else T0)
        )
        storage.set_instance_status(name, InstanceStatus.DEAD)
    storage.add_execution(running(job, "dead-busy", scheduled_for=T0))
    assert storage.delete_instances(last_heartbeat_before=T0 - MINUTE) == 1
    assert sorted(i.id for i in storage.list_instances()) == ["dead-busy", "dead-recent", "live"]


def test_database_now_is_aware_utc_and_close_to_the_host(storage: Storage) -> None:
    now = storage.database_now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs((now - datetime.now(UTC)).total_seconds()) < 60


@pytest.mark.parametrize("registered", [True, False])
def test_a_claim_capped_at_the_database_clock_takes_nothing_before_its_time(
    storage: Storage, registered: bool
) -> None:
    # the caller's clock runs an hour ahead of the database's (a poisoned reading)
    real = storage.database_now()
    add_job(storage, "due", next_run_at=real - MINUTE)
    add_job(storage, "soon", next_run_at=real + 30 * MINUTE, misfire_grace_time=1.0)
    if registered:  # (PostgreSQL reads the clock with the owner's row, else alone)
        storage.register_instance(instance("me", last_heartbeat=real))
    ahead = real + 60 * MINUTE
    planner = Recorder(fire_all)
    claimed = storage.claim(
        now=ahead, owner="me", limit=10, planner=planner, cap_at_database_now=True
    )
    assert [item.job.key for item in claimed] == ["due"]
    assert real <= planner.batch.now <= storage.database_now()
    assert claimed[0].execution.dispatched_at == planner.batch.now
    # uncapped, the caller's time decides
    claimed = storage.claim(now=ahead, owner="me", limit=10, planner=fire_all)
    assert "soon" in [item.job.key for item in claimed]


def test_subscribers_hear_of_changes_made_elsewhere(
    open_storage: OpenStorage, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no cross-process signal: instances poll")
    writer, reader = open_storage(), open_storage()
    heard = threading.Event()
    unsubscribe = reader.subscribe(heard.set)
    try:
        # the listener may still be connecting: keep writing until it hears one
        for attempt in range(50):
            add_job(writer, f"job-{attempt}")
            if heard.wait(0.2):
                break
        assert heard.is_set()
        heard.clear()
        writer.update_job("job-0", {"description": "changed"}, now=T0)
        assert heard.wait(5)
    finally:
        unsubscribe()


def test_only_one_reaper_runs_at_a_time_on_postgres(
    open_storage: OpenStorage, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("memory and SQLite serialise every write already")
    storage = open_storage()
    assert isinstance(storage, SQLAlchemyStorage)
    job = add_job(storage, "work")
    storage.register_instance(instance("dead", last_heartbeat=T0 - 5 * MINUTE))
    storage.add_execution(running(job, "dead", scheduled_for=T0))
    key = lock_key(storage._prefix, storage._schema) + 1
    with storage.engine.connect() as other, other.begin():
        other.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        assert storage.reap(heartbeat_before=T0 - MINUTE, now=T0) is None  # did not wait
    [lost] = storage.reap(heartbeat_before=T0 - MINUTE, now=T0) or []
    assert lost.execution.status is ExecutionStatus.LOST
