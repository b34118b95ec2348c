"""Interval jobs declared in code without a ``start``, on an empty database,
with three instances started a fraction of a second apart. Each would anchor the
schedule at its own "now"; the first stored anchor must win everywhere, so every
instance computes the same slots: no slot starts twice and every ``scheduled_for``
lies on the stored anchor's grid."""

from __future__ import annotations

import collections
import time
from datetime import timedelta

import pytest

from tests.jobs.anchored import KEYS
from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    duplicate_starts,
    extra_starts,
    lateness,
    read_executions,
    read_job_starts,
    read_witness,
    utc,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVERY = {"anchored-0": 1, "anchored-1": 1, "anchored-2": 1, "anchored-3": 2, "anchored-4": 2}


@pytest.mark.timeout(120)
def test_staggered_instances_share_one_anchor(postgres_url, make_cluster, summary):
    url = postgres_url
    create_witness_table(url)  # the taskmgr tables do not exist yet: the instances migrate
    cluster = make_cluster(url)
    procs = cluster.start(3, args=["--module", "tests.jobs.anchored"], stagger=0.3, wait=False)
    cluster.wait_ready(procs)
    time.sleep(6.0)
    ended_at = time.time()
    cluster.stop()

    anchors = read_job_starts(url)
    starts = read_witness(url)
    rows = read_executions(url)
    duplicates = duplicate_starts(starts, per_attempt=False)
    off_grid = [
        s
        for s in starts
        if (s.scheduled_for - anchors[s.job_key]) % timedelta(seconds=EVERY[s.job_key])
    ]
    off_grid_rows = [
        r
        for r in rows
        if (r.scheduled_for - anchors[r.job_key]) % timedelta(seconds=EVERY[r.job_key])
    ]
    expected = set()
    for key in KEYS:
        slot = anchors[key] + timedelta(seconds=EVERY[key])
        while slot <= utc(ended_at) - timedelta(seconds=1.5):
            expected.add((key, slot))
            slot += timedelta(seconds=EVERY[key])
    missing = sorted(expected - {s.slot for s in starts})
    _, worst = lateness(starts)
    summary(
        "f30_staggered_anchor",
        fires=len(starts),
        duplicates=extra_starts(duplicates),
        lost=sum(r.status == "lost" for r in rows),
        missing=len(missing),
        off_grid=len(off_grid) + len(off_grid_rows),
        max_lateness_ms=worst,
        shares=dict(collections.Counter(s.pid for s in starts)),
    )
    assert set(anchors) == set(KEYS)
    assert duplicates == {}
    assert off_grid == [] and off_grid_rows == []
    assert len(expected) >= 10
    assert missing == [], missing
    assert not [p for p in procs if "Traceback" in p.stderr()], [p.stderr() for p in procs]
