"""Sensitivity check: with slot claiming bypassed by the test-only switch
``--uncoordinated`` (``tests/faults.py``), the very harness the other scenarios use reports
duplicate starts. If it did not, it could not see duplicates at all and every
"duplicates 0" below would mean nothing."""

from __future__ import annotations

import time

import pytest

from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    create_interval_jobs,
    duplicate_starts,
    extra_starts,
    lateness,
    next_second,
    read_witness,
    sleep_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 5
PROCESSES = 2
SLOTS = 4


def test_uncoordinated_processes_are_seen_starting_slots_twice(postgres_url, make_cluster, summary):
    create_witness_table(postgres_url)
    keys = [f"sens-{i}" for i in range(JOBS)]
    # the uncoordinated claimer reads the jobs once, at its first tick: create them first
    anchor = next_second(time.time(), lead=2.5)
    create_interval_jobs(postgres_url, keys, anchor)
    cluster = make_cluster(postgres_url)
    cluster.start(PROCESSES, args=["--uncoordinated"])  # returns once both are ready
    # on a loaded machine start-up may outlast the lead: watch SLOTS slots from then
    sleep_until(max(anchor.timestamp(), time.time()) + SLOTS - 0.5)
    cluster.stop()

    starts = read_witness(postgres_url)
    duplicates = duplicate_starts(starts)
    _, worst = lateness(starts)
    summary(
        "sensitivity_uncoordinated",
        processes=PROCESSES,
        fires=len(starts),
        slots=len({s.slot for s in starts}),
        duplicates=extra_starts(duplicates),
        lost=0,
        max_lateness_ms=worst,
    )
    assert extra_starts(duplicates) > 0, "the harness cannot see duplicate starts"
    # both processes fired every slot they saw: each witnessed slot ran on both pids
    assert len({s.pid for s in starts}) == PROCESSES
