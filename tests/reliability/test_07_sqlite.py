"""The "gunicorn with 4 workers" case, four scheduler processes on one SQLite
file. No slot starts twice, none is missed, and no "database is locked" error
reaches any process's log."""

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

pytestmark = pytest.mark.slow

JOBS = 20
PROCESSES = 4
SLOTS = 8


@pytest.mark.timeout(120)
def test_four_processes_on_one_sqlite_file(tmp_path, make_cluster, summary):
    url = f"sqlite:///{tmp_path / 'taskmgr.db'}"
    witness_url = f"sqlite:///{tmp_path / 'witness.db'}"
    create_witness_table(witness_url)
    keys = [f"sqlite-{i:02d}" for i in range(JOBS)]
    create_interval_jobs(url, keys, next_second(time.time(), lead=3600))  # schema + jobs
    cluster = make_cluster(url, witness_url)
    procs = cluster.start(PROCESSES)
    anchor = next_second(time.time(), lead=1.0)
    # re-anchor the jobs now that every worker is up
    from taskmgr import Interval, SchedulerService
    from tests.jobs.witness import witness, witness_slow

    setup = SchedulerService(url, jobs=[witness, witness_slow])
    try:
        for key in keys:
            setup.update_job(key, trigger=Interval(1, start=anchor))
    finally:
        setup.close()
    first_due = first_own_slot(anchor, utc(time.time()))  # a slow machine re-anchors late
    sleep_until(anchor.timestamp() + SLOTS - 0.5)
    stopped_at = time.time()
    cluster.stop()

    starts = read_witness(witness_url)
    rows = read_executions(url)
    duplicates = duplicate_starts(starts, per_attempt=False)
    # every slot up to the newest each job ran started once (see test_02_spread)
    expected, late_first = ran_grid(rows, keys, first_due)
    # a slot that came while its previous run was still being recorded (a busy
    # machine) is a `skipped` row: accounted for, not lost
    waited = {(r.job_key, r.scheduled_for) for r in rows if r.status in ("skipped", "missed")}
    missing = missing_slots(starts, expected - waited)
    reach = expected_slots(keys, anchor, utc(stopped_at) - timedelta(seconds=1.5))
    stderr = {p.name: p.stderr() for p in procs}
    locked = {name: err.count("database is locked") for name, err in stderr.items()}
    errors = {name: err.count(" ERROR ") for name, err in stderr.items()}
    shares = collections.Counter(s.pid for s in starts)
    p99, worst = lateness(starts)
    summary(
        "f25_sqlite_four_processes",
        fires=len(starts),
        expected=len(expected),
        due_before_stop=len(reach),
        duplicates=extra_starts(duplicates),
        missing=len(missing),
        lost=sum(r.status == "lost" for r in rows),
        database_locked=sum(locked.values()),
        error_lines=sum(errors.values()),
        p99_lateness_ms=p99,
        max_lateness_ms=worst,
        shares={p.name: shares[p.pid] for p in procs},
    )
    assert duplicates == {}
    assert late_first == {}, f"jobs whose first slot has no row: {late_first}"
    assert len(expected) >= JOBS * 2, "the processes hardly fired"
    assert missing == [], missing[:5]
    assert sum(locked.values()) == 0, {n: e[-2000:] for n, e in stderr.items() if locked[n]}
    assert sum(errors.values()) == 0, {n: e[-2000:] for n, e in stderr.items() if errors[n]}
    assert {(r.job_key, r.scheduled_for) for r in rows if r.status == "success"} == {
        s.slot for s in starts
    }
