"""SIGKILL one instance at each step of a fire, with survivors running.

- ``after_claim_commit``: the victim claimed the slots (committed) and is parked by
  the fault hook before dispatching them: nothing ran.
- ``mid_run``: a slow job is running on the victim (its start is witnessed).
- ``after_execute``: the job returned on the victim, the fault hook parks it before
  its outcome is handed to the writer.

Each time: no slot attempt starts twice; the victim's executions become ``lost``
within ``heartbeat_timeout + sweep_interval`` (G3; measured, with a tolerance for a
loaded CI box); jobs with ``max_retries=1`` run that slot again exactly once, on a
survivor; jobs without retries never run it again; and the following slots of those
jobs fire on the survivors.
"""

from __future__ import annotations

import collections
import time
from datetime import timedelta

import pytest

from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    Row,
    create_interval_jobs,
    duplicate_starts,
    extra_starts,
    next_second,
    read_executions,
    read_witness,
    utc,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: Slack over the G3 bound for scheduling noise (a correctness bound, not a timing).
TOLERANCE = 2.0
SLOW = 3.0
RETRY_BACKOFF = {"base": 0.5, "jitter": 0.0}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["after_claim_commit", "mid_run", "after_execute"])
def test_sigkill_during_a_fire(point, postgres_url, make_cluster, timings, summary, tmp_path):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    retry_keys = [f"retry-{i}" for i in range(3)]
    once_keys = [f"once-{i}" for i in range(3)]
    keys = retry_keys + once_keys
    marker = tmp_path / "paused.pid"
    slow = SLOW if point == "mid_run" else None

    if point == "mid_run":
        # all three run; the victim is whichever starts the first slow run
        survivors_and_victim = cluster.start(3)
        anchor = next_second(time.time(), lead=1.0)
        create_interval_jobs(
            url, retry_keys, anchor, slow=slow, max_retries=1, retry_backoff=RETRY_BACKOFF
        )
        create_interval_jobs(url, once_keys, anchor, slow=slow)
        first = wait_for(
            "a slow run to start",
            lambda: next((s for s in read_witness(url) if s.scheduled_for == anchor), None),
            timeout=15,
        )
        time.sleep(0.3)  # let the victim start the rest of what it claimed
        victim = cluster.by_pid()[first.pid]
        survivors = [p for p in survivors_and_victim if p is not victim]
    else:
        # the victim runs alone until the hook parks it holding the first slots
        [victim] = cluster.start(1, args=["--pause-at", point, "--marker", str(marker)])
        anchor = next_second(time.time(), lead=1.0)
        create_interval_jobs(url, retry_keys, anchor, max_retries=1, retry_backoff=RETRY_BACKOFF)
        create_interval_jobs(url, once_keys, anchor)
        wait_for("the fault hook to park the victim", marker.exists, timeout=15)
        if point == "after_execute":
            wait_for(
                "every first slot to run on the victim",
                lambda: {s.job_key for s in read_witness(url)} >= set(keys),
                timeout=10,
            )
        survivors = cluster.start(2)

    def victim_rows() -> list[Row]:
        return [
            r
            for r in read_executions(url)
            if r.owner == victim.instance_id and r.scheduled_for == anchor
        ]

    held = [r for r in victim_rows() if r.status == "running"]
    assert held, f"the victim holds no running execution: {victim_rows()}"
    if point != "mid_run":
        assert {r.job_key for r in held} == set(keys)

    killed_at = cluster.kill(victim)
    held_ids = {r.id for r in held}

    def all_lost() -> list[Row] | None:
        rows = [r for r in read_executions(url) if r.id in held_ids]
        return rows if all(r.status != "running" for r in rows) else None

    ended = wait_for(
        "the victim's executions to be reaped",
        all_lost,
        timeout=timings.detection_bound + 15,
        interval=0.05,
    )
    detection = max(r.completed_at for r in ended).timestamp() - killed_at  # type: ignore[union-attr]

    held_retry = {r.job_key for r in held if r.job_key in retry_keys}
    held_once = {r.job_key for r in held if r.job_key in once_keys}
    survivor_pids = {p.pid for p in survivors}

    def followed_up() -> bool:
        starts = read_witness(url)
        retried = {s.job_key for s in starts if s.attempt == 2 and s.pid in survivor_pids}
        rows = read_executions(url)
        retries_done = all(
            any(
                r.job_key == key and r.attempt == 2 and r.status not in ("pending", "running")
                for r in rows
            )
            for key in held_retry
        )
        next_fired = {
            s.job_key
            for s in starts
            if s.attempt == 1 and s.scheduled_for > anchor and s.pid in survivor_pids
        }
        return retried >= held_retry and retries_done and next_fired >= {r.job_key for r in held}

    wait_for("retries and the next slots on the survivors", followed_up, timeout=30)
    ended_at = time.time()
    cluster.stop()

    starts = read_witness(url)
    rows = read_executions(url)
    duplicates = duplicate_starts(starts)
    once_duplicates = duplicate_starts(
        [s for s in starts if s.job_key in once_keys], per_attempt=False
    )
    retried_starts = [s for s in starts if s.attempt == 2]
    after_kill = [
        s for s in starts if s.started_at > killed_at and s.job_key in held_retry | held_once
    ]
    takeover = min(s.started_at for s in after_kill) - killed_at if after_kill else None
    first_retry = min(s.started_at for s in retried_starts) - killed_at if retried_starts else None
    summary(
        f"f3_sigkill_{point}",
        fires=len(starts),
        duplicates=extra_starts(duplicates),
        lost=len(ended),
        retried=len(retried_starts),
        detection_s=detection,
        detection_bound_s=timings.detection_bound,
        first_retry_s=first_retry,
        takeover_s=takeover,
        statuses=dict(collections.Counter(r.status for r in rows)),
    )

    # G1: no slot attempt started twice; jobs without retries: no slot started twice
    assert duplicates == {}
    assert once_duplicates == {}
    # G3: the victim's executions are lost, within the bound
    assert all(r.status == "lost" for r in ended), ended
    assert 0 <= detection <= timings.detection_bound + TOLERANCE, detection
    for key in held_retry:
        # retried exactly once, on a survivor, and that run succeeded
        again = [
            r for r in rows if r.job_key == key and r.scheduled_for == anchor and r.attempt == 2
        ]
        assert len(again) == 1 and again[0].status == "success", again
        assert again[0].pid in survivor_pids
        assert [s.pid for s in starts if s.slot == (key, anchor) and s.attempt == 2] == [
            again[0].pid
        ]
    assert not any(r.attempt > 2 for r in rows)
    for key in held_once:
        assert not [r for r in rows if r.job_key == key and r.attempt > 1]
    for key in held_retry | held_once:
        first_starts = [s for s in starts if s.slot == (key, anchor) and s.attempt == 1]
        if point == "after_claim_commit":
            assert first_starts == []  # claimed, never dispatched
        else:
            assert [s.pid for s in first_starts] == [victim.pid]
    # the next slots of the affected jobs fired on the survivors
    for key in held_retry | held_once:
        assert any(
            s.job_key == key and s.scheduled_for > anchor and s.pid in survivor_pids for s in starts
        )
    # G2: every slot of every job up to the end has a row; nothing is left running
    last = utc(ended_at) - timedelta(seconds=2)
    slots = collections.defaultdict(set)
    for r in rows:
        slots[r.job_key].add(r.scheduled_for)
    for key in keys:
        k = 0
        while anchor + timedelta(seconds=k) <= last:
            assert anchor + timedelta(seconds=k) in slots[key], (key, k)
            k += 1
    assert not [r for r in rows if r.status == "running"]
