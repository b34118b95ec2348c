"""The zombie: SIGSTOP an instance while it runs a job, for longer than its
heartbeat timeout, then SIGCONT. The survivors keep firing; the frozen instance's
executions are declared ``lost``; when it wakes, its late outcomes are rejected by
the ``(owner, attempt)`` fence (logged by ``taskmgr.execution``), never applied;
no slot starts twice (jobs without retries)."""

from __future__ import annotations

import collections
import signal
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    create_interval_jobs,
    duplicate_starts,
    extra_starts,
    lateness,
    next_second,
    read_executions,
    read_witness,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOLERANCE = 2.0


def idle_in_transaction(url: str) -> bool:
    """Whether a session of this database sits idle inside a transaction: taskmgr's
    transactions last milliseconds, so one still open after 0.5 s belongs to the
    process that was just frozen."""
    time.sleep(0.5)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                    " AND clock_timestamp() - state_change > interval '0.4 seconds'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return bool(found)


@pytest.mark.timeout(120)
def test_frozen_instance_is_taken_over_and_its_late_writes_rejected(
    postgres_url, make_cluster, timings, summary
):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    procs = cluster.start(3)
    fast_keys = [f"fast-{i}" for i in range(6)]
    slow_keys = [f"slow-{i}" for i in range(2)]
    anchor = next_second(time.time(), lead=1.0)
    create_interval_jobs(url, fast_keys, anchor)
    create_interval_jobs(url, slow_keys, anchor, slow=2.0)

    def slow_running():
        # between two seconds: this second's fast runs (a few ms) have ended
        if not 0.3 <= time.time() % 1 <= 0.8:
            return None
        rows = {r.id: r for r in read_executions(url) if r.status == "running"}
        for start in read_witness(url):
            if start.job_key in slow_keys and start.execution_id in rows:
                return start
        return None

    # Freeze it outside a transaction: frozen *inside* one (a claim, an outcome write)
    # it holds row locks until PostgreSQL's session timeouts end that transaction
    # (test_08_frozen_claim.py shows that case deterministically). And freeze it while
    # some fast job is not in its hands, so that survivors have slots to take over.
    # Which case a SIGSTOP hits is luck: when it is the wrong one, let the process go
    # and freeze it again.
    froze_inside = froze_holding_all = 0
    for _ in range(20):
        start = wait_for("a slow run to be in progress", slow_running, timeout=15, interval=0.05)
        victim = cluster.by_pid()[start.pid]
        stopped_at = time.time()
        victim.signal(signal.SIGSTOP)
        if idle_in_transaction(url):
            froze_inside += 1
        else:
            held = [
                r
                for r in read_executions(url)
                if r.owner == victim.instance_id and r.status == "running"
            ]
            if set(fast_keys) - {r.job_key for r in held}:
                break
            froze_holding_all += 1
        victim.signal(signal.SIGCONT)
        time.sleep(0.3)
    else:
        pytest.fail("no SIGSTOP landed outside a transaction with a fast job left to others")
    held_ids = {r.id for r in held}
    assert start.execution_id in held_ids

    def reaped():
        rows = [r for r in read_executions(url) if r.id in held_ids]
        return rows if all(r.status != "running" for r in rows) else None

    ended = wait_for(
        "the frozen instance's executions to be reaped",
        reaped,
        timeout=timings.detection_bound + 15,
        interval=0.05,
    )
    detection = max(r.completed_at for r in ended).timestamp() - stopped_at
    time.sleep(1.5)  # the survivors keep going while it is still frozen
    continued_at = time.time()
    victim.signal(signal.SIGCONT)
    # it wakes: its slow job returns, its outcome must be rejected
    wait_for(
        "the woken instance to log the rejected outcome",
        lambda: f"execution {start.execution_id} rejected" in victim.stderr(),
        timeout=15,
    )
    time.sleep(2.0)
    ended_at = time.time()
    cluster.stop()

    starts = read_witness(url)
    rows = read_executions(url)
    final = {r.id: r for r in rows}
    duplicates = duplicate_starts(starts, per_attempt=False)
    survivors = {p.pid for p in procs if p is not victim}
    held_keys = {r.job_key for r in held}
    # while it was frozen, every slot of the jobs it did not hold ran on a survivor
    window = [
        (key, anchor + timedelta(seconds=k))
        for key in fast_keys
        if key not in held_keys
        for k in range(60)
        if stopped_at + 1.0 <= (anchor + timedelta(seconds=k)).timestamp() <= continued_at - 1.0
    ]
    by_slot = {s.slot: s for s in starts}
    during = [by_slot[slot] for slot in window if slot in by_slot]
    taken_over = [slot for slot in window if slot in by_slot and by_slot[slot].pid in survivors]
    rejected = victim.stderr().count(" rejected: ")
    rejoined = any(s.pid == victim.pid and s.started_at > continued_at for s in starts)
    _, worst_during = lateness(during)
    summary(
        "f5_sigstop_zombie",
        fires=len(starts),
        duplicates=extra_starts(duplicates),
        lost=len(ended),
        frozen_s=continued_at - stopped_at,
        detection_s=detection,
        detection_bound_s=timings.detection_bound,
        rejected_outcomes=rejected,
        max_lateness_while_frozen_ms=worst_during,
        victim_fired_again=rejoined,
        froze_inside_transaction=froze_inside,
        froze_holding_every_fast_job=froze_holding_all,
        statuses=dict(collections.Counter(r.status for r in rows)),
    )

    assert duplicates == {}
    assert all(final[i].status == "lost" for i in held_ids), [final[i] for i in held_ids]
    assert 0 <= detection <= timings.detection_bound + TOLERANCE
    assert rejected >= 1
    assert "registering again" in victim.stderr()
    # the survivors took over: no slot of an unaffected job went unstarted meanwhile
    assert window and len(taken_over) == len(window), sorted(set(window) - set(taken_over))
    # the affected jobs fire again once their executions are lost
    for key in held_keys:
        assert any(
            s.job_key == key and s.started_at > ended[0].completed_at.timestamp()  # type: ignore[union-attr]
            for s in starts
        ), key
    # nothing the zombie reported after waking was applied to a lost execution
    assert not any(r.status == "running" for r in rows)
    assert ended_at > continued_at
