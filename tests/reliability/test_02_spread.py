"""Three instances, 100 jobs every second. Every slot starts exactly once
(counted from the witness table) and the work is spread over all instances."""

from __future__ import annotations

import collections
import time
from datetime import timedelta

import pytest

from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    create_interval_jobs,
    duplicate_starts,
    expected_slots,
    extra_starts,
    first_own_slot,
    lateness,
    missing_slots,
    next_second,
    ran_grid,
    read_executions,
    read_witness,
    sleep_until,
    utc,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 100
PROCESSES = 3
SLOTS = 8


def test_three_instances_start_every_slot_once_and_share_the_work(
    postgres_url, make_cluster, summary
):
    create_witness_table(postgres_url)
    cluster = make_cluster(postgres_url)
    procs = cluster.start(PROCESSES)
    keys = [f"spread-{i:03d}" for i in range(JOBS)]
    anchor = next_second(time.time(), lead=1.0)
    create_interval_jobs(postgres_url, keys, anchor)
    # A job created after its anchor (a slow machine) starts at the next grid point
    # after its creation: that slot is its first, the earlier ones are not its own.
    first_due = first_own_slot(anchor, utc(time.time()))
    sleep_until(anchor.timestamp() + SLOTS - 0.5)
    stopped_at = time.time()
    cluster.stop()

    starts = read_witness(postgres_url)
    duplicates = duplicate_starts(starts, per_attempt=False)
    rows = read_executions(postgres_url)
    # Every slot up to the newest one each job ran must have started once: a hole in
    # the grid is a lost slot. How far the grids reach by the stop depends on how busy
    # the machine is, so that is only reported (due_before_stop), with a floor below.
    expected, late_first = ran_grid(rows, keys, first_due)
    # a slot that came while its previous run was still being recorded (a busy
    # machine) is a `skipped` row: accounted for, not lost
    waited = {(r.job_key, r.scheduled_for) for r in rows if r.status in ("skipped", "missed")}
    missing = missing_slots(starts, expected - waited)
    reach = expected_slots(keys, anchor, utc(stopped_at) - timedelta(seconds=1.5))
    shares = collections.Counter(s.pid for s in starts)
    p99, worst = lateness(starts)
    summary(
        "f1_three_instances_100_jobs",
        fires=len(starts),
        expected=len(expected),
        due_before_stop=len(reach),
        duplicates=extra_starts(duplicates),
        missing=len(missing),
        lost=sum(r.status == "lost" for r in rows),
        p99_lateness_ms=p99,
        max_lateness_ms=worst,
        shares={p.name: round(shares[p.pid] / max(1, len(starts)), 3) for p in procs},
    )
    assert duplicates == {}
    assert late_first == {}, f"jobs whose first slot has no row: {late_first}"
    assert len(expected) >= JOBS * 2, "the instances hardly fired"
    gaps = set(missing)
    holes = [
        (r.job_key, r.scheduled_for, r.status) for r in rows if (r.job_key, r.scheduled_for) in gaps
    ]
    assert missing == [], f"{len(missing)} slots never started, e.g. {missing[:5]}: {holes[:5]}"
    assert all(shares[p.pid] > 0 for p in procs), f"an instance fired nothing: {shares}"
    # taskmgr's history agrees with the witness: one success per witnessed start
    assert {(r.job_key, r.scheduled_for) for r in rows if r.status == "success"} == {
        s.slot for s in starts
    }
    assert all(r.status in ("success", "running", "skipped", "missed") for r in rows), (
        collections.Counter(r.status for r in rows)
    )
