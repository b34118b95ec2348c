"""Whole-cluster (docs/guarantees.md, G4) outage: every instance stops for longer than several
slots, then three start at the same moment. Per job exactly the documented catch-up
happens, once: with ``coalesce=True`` one ``catchup`` run for the newest slot due
(within the misfire grace), every older missed slot a ``missed`` row saying it was
coalesced into that run; no slot starts twice."""

from __future__ import annotations

import collections
import time
from datetime import timedelta

import pytest

from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    create_interval_jobs,
    duplicate_starts,
    extra_starts,
    next_second,
    read_executions,
    read_witness,
    sleep_until,
    utc,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 10
OUTAGE = 4.5


@pytest.mark.timeout(120)
def test_three_instances_back_from_an_outage_catch_up_once(postgres_url, make_cluster, summary):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    cluster.start(3)
    keys = [f"outage-{i}" for i in range(JOBS)]
    anchor = next_second(time.time(), lead=1.0)
    create_interval_jobs(url, keys, anchor)  # coalesce=True, misfire grace 60 s
    sleep_until(anchor.timestamp() + 2.5)
    cluster.stop()
    stopped_at = time.time()
    sleep_until(stopped_at + OUTAGE)
    restarted_at = time.time()
    back = cluster.start(3)  # spawned together, before any is ready
    time.sleep(3.0)
    ended_at = time.time()
    cluster.stop()

    starts = read_witness(url)
    rows = read_executions(url)
    duplicates = duplicate_starts(starts, per_attempt=False)
    by_key = collections.defaultdict(list)
    for r in rows:
        by_key[r.job_key].append(r)

    catchups = {}
    gaps = {}
    for key in keys:
        job_rows = sorted(by_key[key], key=lambda r: r.scheduled_for)
        # G2: exactly one row per slot, from the anchor to the end
        slots = [r.scheduled_for for r in job_rows]
        assert slots == [anchor + timedelta(seconds=k) for k in range(len(slots))], key
        assert slots[-1] >= utc(ended_at) - timedelta(seconds=2)
        before = [r for r in job_rows if r.created_at.timestamp() < stopped_at]
        after = [r for r in job_rows if r.created_at.timestamp() >= stopped_at]
        assert before and after
        catchup = [r for r in after if r.trigger == "catchup"]
        assert len(catchup) == 1, (key, catchup)
        [run] = catchup
        gap = [r for r in after if r.scheduled_for <= run.scheduled_for]
        missed = gap[:-1]
        gaps[key] = len(gap)
        catchups[key] = run
        assert gap[-1] is run and run.status == "success"
        # the newest slot due when it was claimed, not an older one
        assert run.scheduled_for <= run.created_at < run.scheduled_for + timedelta(seconds=1)
        assert len(gap) >= int(OUTAGE) - 1, (key, len(gap))
        for r in missed:
            assert r.status == "missed" and r.trigger == "schedule", r
            assert f"coalesced into the run of {run.scheduled_for.isoformat()}" in (
                r.error_message or ""
            ), r
        # after the catch-up, the schedule simply continues
        assert all(r.trigger == "schedule" for r in after if r.scheduled_for > run.scheduled_for)
        # witnessed: the catch-up ran once, the coalesced slots never
        assert [s for s in starts if s.slot == (key, run.scheduled_for)].__len__() == 1
        assert not [s for s in starts if s.slot in {(key, r.scheduled_for) for r in missed}]

    first_catchup = min(
        s.started_at for s in starts if s.execution_id in {r.id for r in catchups.values()}
    )
    summary(
        "f29_cluster_outage_restart_three",
        fires=len(starts),
        duplicates=extra_starts(duplicates),
        lost=sum(r.status == "lost" for r in rows),
        outage_s=restarted_at - stopped_at,
        catchups_per_job=1,
        missed_per_job=sorted({n - 1 for n in gaps.values()}),
        first_catchup_after_spawn_s=first_catchup - restarted_at,
        instances_back=len(back),
    )
    assert duplicates == {}
    # Nothing failed or was lost. A slot right after a catch-up may find the catch-up
    # still `running` (its outcome is written a moment after the job returns) and be
    # `skipped` by the default overlap policy on a loaded machine: that is the policy,
    # not a fault, and it is never a start.
    overlap = [r for r in rows if r.status == "skipped"]
    assert all("max_instances=1" in (r.error_message or "") for r in overlap), overlap
    assert not [s for s in starts if s.slot in {(r.job_key, r.scheduled_for) for r in overlap}]
    assert not [r for r in rows if r.status not in ("success", "missed", "skipped")]
