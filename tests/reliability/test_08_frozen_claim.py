"""A zombie inside the claim window: an instance that freezes (SIGSTOP, a VM pause, a
network partition) *while its claim transaction is open* must not stall the
cluster for as long as it stays frozen.

Deterministic stand-in for "SIGSTOP at the right millisecond": the planner of a
claim, which runs inside the claim transaction, blocks. That transaction then holds
a share lock on the instance's own row and row locks on the due jobs. Expected
(docs/guarantees.md, G3 and G7): within a few seconds the reaper can still declare
that instance dead, and another instance can claim the locked jobs' slots. Without
``idle_in_transaction_session_timeout`` / ``lock_timeout`` on taskmgr's PostgreSQL
sessions, the reaper would wait on the frozen transaction's lock (holding the
cluster-wide reaper lock meanwhile: no instance anywhere reaped) and every other
claimer would skip the locked jobs until the frozen process woke up.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from taskmgr import Instance, InstanceStatus, Interval, SchedulerService
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.storage.sqlalchemy.engine import (
    POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    POSTGRES_LOCK_TIMEOUT_MS,
)
from tests.jobs.witness import witness
from tests.services import require_postgres

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: How long the cluster may be held up by one frozen claimer: the session timeouts
#: that end a frozen transaction, plus slack for a loaded machine. A correctness
#: bound ("seconds, not as long as the freeze lasts"), not a timing.
BOUND = max(POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS, POSTGRES_LOCK_TIMEOUT_MS) / 1000 + 10.0


@pytest.fixture
def schema_url():
    url = require_postgres()
    schema = f"tm_frozen_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield url, schema
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _instance(instance_id: str, last_heartbeat: datetime) -> Instance:
    return Instance(
        id=instance_id,
        hostname=socket.gethostname(),
        pid=0,
        mode="embedded",
        status=InstanceStatus.RUNNING,
        started_at=last_heartbeat,
        last_heartbeat=last_heartbeat,
    )


@pytest.mark.timeout(120)
def test_a_claimer_frozen_inside_its_transaction_does_not_stall_the_cluster(schema_url):
    url, schema = schema_url
    frozen_store = SQLAlchemyStorage(url, schema=schema)
    peer_store = SQLAlchemyStorage(url, schema=schema)
    frozen_store.open()
    peer_store.open()
    setup = SchedulerService(frozen_store, jobs=[witness], background=False)
    now = datetime.now(UTC)
    setup.create_job("frozen-job", witness, trigger=Interval(1, start=now - timedelta(seconds=3)))
    # the frozen instance's last heartbeat is long past; the peer's is fresh
    frozen_store.register_instance(_instance("frozen", now - timedelta(hours=1)))
    peer_store.register_instance(_instance("peer", now))

    entered, release = threading.Event(), threading.Event()
    planner = Planner("frozen", {"tests.jobs.witness.witness"})

    def freezing_planner(batch):  # the process stops right here, mid-transaction
        outcome["batch"] = [job.key for job in batch.due_jobs]
        entered.set()
        release.wait(BOUND + 30)
        return planner(batch)

    outcome: dict[str, object] = {}

    def frozen_claim() -> None:
        try:
            # a little ahead, so the job is surely due for this claim
            outcome["claimed"] = frozen_store.claim(
                now=datetime.now(UTC) + timedelta(seconds=2),
                owner="frozen",
                limit=10,
                planner=freezing_planner,
            )
        except Exception as exc:  # the fix may abort the frozen transaction
            outcome["error"] = exc

    def reap() -> None:
        # as the maintenance loop does: a sweep that fails (a lock timeout racing the
        # frozen session's own timeout) is tried again on the next tick
        deadline = time.monotonic() + BOUND
        while "reaped" not in outcome and time.monotonic() < deadline:
            cutoff = datetime.now(UTC) - timedelta(minutes=1)
            try:
                outcome["reaped"] = peer_store.reap(heartbeat_before=cutoff, now=datetime.now(UTC))
            except Exception as exc:
                outcome["reap_error"] = exc
                time.sleep(0.2)

    claimer = threading.Thread(target=frozen_claim, daemon=True)
    reaper = threading.Thread(target=reap, daemon=True)
    try:
        claimer.start()
        assert entered.wait(10), "the claim never reached its planner"
        assert outcome["batch"] == ["frozen-job"]  # its row is now locked
        reaper.start()
        reaper.join(BOUND + 10)
        reaper_blocked = "reaped" not in outcome

        # meanwhile a live peer tries to fire the frozen claimer's due job
        peer_planner = Planner("peer", {"tests.jobs.witness.witness"})
        deadline = time.monotonic() + BOUND
        peer_claimed = []
        while not peer_claimed and time.monotonic() < deadline:
            try:
                peer_claimed = peer_store.claim(
                    now=datetime.now(UTC), owner="peer", limit=10, planner=peer_planner
                )
            except Exception as exc:  # e.g. a lock timeout: a live peer tries again
                outcome["peer_error"] = exc
            if not peer_claimed:
                time.sleep(0.2)
    finally:
        release.set()
        claimer.join(30)
        reaper.join(30)
        setup.close()
        frozen_store.close()
        peer_store.close()

    problems = []
    if reaper_blocked:
        problems.append(
            f"no sweep could reap in {BOUND}s (last error: {outcome.get('reap_error')!r})"
        )
    if not peer_claimed:
        problems.append(
            f"no live peer could claim the frozen claimer's due job in {BOUND}s "
            f"(last error: {outcome.get('peer_error')!r})"
        )
    assert problems == []
