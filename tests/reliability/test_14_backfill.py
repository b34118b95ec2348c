"""A backfill of 1,000 past slots while three instances run on one PostgreSQL database:
each slot starts exactly once (the witness table, written by the job itself, is the
judge), each ends as one successful ``backfill`` row, the job's own schedule goes on
beside it, and the instances share the work."""

from __future__ import annotations

import collections
import time
from datetime import timedelta

import pytest

from taskmgr import SchedulerService
from tests.jobs.witness import create_witness_table, witness
from tests.reliability.harness import (
    create_interval_jobs,
    duplicate_starts,
    extra_starts,
    next_second,
    read_executions,
    read_witness,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SLOTS = 1000
KEY = "backfilled"


@pytest.mark.timeout(150)
def test_a_backfill_of_1000_slots_runs_each_once_across_three_instances(
    postgres_url, make_cluster, summary
):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    procs = cluster.start(3)
    # a grid of every second reaching far into the past: its last 1,000+ slots are
    # before the job exists, so only a backfill runs them
    anchor = next_second(time.time() - 2 * SLOTS, lead=0.0)
    create_interval_jobs(url, [KEY], anchor, max_instances=10)
    start = anchor + timedelta(seconds=10)
    end = start + timedelta(seconds=SLOTS - 1)
    operator = SchedulerService(url, jobs=[witness])
    try:
        result = operator.backfill(KEY, start, end, max_runs=SLOTS, actor="ops")
    finally:
        operator.close()
    assert (result.slots, result.created, result.existing) == (SLOTS, SLOTS, 0)

    def backfilled_done() -> list | None:
        rows = [r for r in read_executions(url) if r.trigger == "backfill"]
        finished = [r for r in rows if r.status not in ("pending", "running")]
        return rows if len(finished) == SLOTS else None

    rows = wait_for("every backfilled slot to finish", backfilled_done, timeout=120)
    cluster.stop()

    slots = {start + timedelta(seconds=n) for n in range(SLOTS)}
    starts = [s for s in read_witness(url) if s.job_key == KEY and s.scheduled_for in slots]
    duplicates = duplicate_starts(starts, per_attempt=False)
    shares = collections.Counter(s.pid for s in starts)
    summary(
        "backfill_1000_slots_three_instances",
        fires=len(starts),
        expected=SLOTS,
        duplicates=extra_starts(duplicates),
        shares={p.name: round(shares[p.pid] / max(1, len(starts)), 3) for p in procs},
    )
    assert duplicates == {}
    assert {s.scheduled_for for s in starts} == slots
    assert sorted(r.scheduled_for for r in rows) == sorted(slots)
    assert {r.status for r in rows} == {"success"}
    assert len(shares) >= 2, f"one instance ran the whole backfill: {shares}"
    # the schedule itself went on beside the backfill, and never took a backfilled slot
    schedule = [r for r in read_executions(url) if r.job_key == KEY and r.trigger != "backfill"]
    assert schedule, "the job's own slots did not run beside the backfill"
    assert not {r.scheduled_for for r in schedule} & slots
