"""A reload: the process firing a 1 s job is replaced by a new one (docs/deployment.md,
"Deploying, restarting, scaling").

- Started as the old one is told to stop (gunicorn's HUP), with a ``handover_timeout``:
  the old process fires until the new one is up, however long the new one takes to
  import the application. Every slot runs once, on time; none is late, missed or
  coalesced.
- Started only after the old one exited (nothing hands over): the slots of the gap
  follow the misfire policy (docs/guarantees.md, G4), once. Within the grace, each
  runs late as a ``catchup`` with ``coalesce=False``; with ``coalesce=True`` only the
  newest, the older ones ``missed`` ("coalesced into the run of ...").
"""

from __future__ import annotations

import collections
import signal
import time
from datetime import datetime, timedelta

import pytest

from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    Row,
    Start,
    create_interval_jobs,
    duplicate_starts,
    extra_starts,
    lateness,
    next_second,
    read_executions,
    read_witness,
    sleep_until,
    utc,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: How long the new process takes to start (an application slow to import).
IMPORT_DELAY = 2.0


def rows_by_job(rows: list[Row]) -> dict[str, list[Row]]:
    by_key: dict[str, list[Row]] = collections.defaultdict(list)
    for row in rows:
        by_key[row.job_key].append(row)
    return by_key


def starts_per_slot(starts: list[Start]) -> collections.Counter[tuple[str, datetime]]:
    return collections.Counter(s.slot for s in starts)


def assert_one_row_per_slot(rows: list[Row], anchor: datetime, until: float) -> None:
    slots = [r.scheduled_for for r in rows]
    assert slots == [anchor + timedelta(seconds=k) for k in range(len(slots))], slots
    assert slots[-1] >= utc(until) - timedelta(seconds=2)


@pytest.mark.timeout(60)
def test_a_reload_hands_over_without_a_gap(postgres_url, make_cluster, summary):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    [old] = cluster.start(1, args=["--handover-timeout", "10"])
    keys = [f"reload-{i}" for i in range(3)]
    anchor = next_second(time.time(), lead=0.5)
    create_interval_jobs(url, keys, anchor)  # the defaults: coalesce=True, grace 60 s
    sleep_until(anchor.timestamp() + 1.5)
    new = cluster.spawn(args=["--start-delay", str(IMPORT_DELAY)])
    reload_at = time.time()
    old.signal(signal.SIGTERM)
    cluster.wait_ready([new])
    wait_for("the old process to exit", lambda: not old.alive(), timeout=15)
    old_exited_at = time.time()
    sleep_until(old_exited_at + 2.0)
    ended_at = time.time()
    cluster.stop()

    starts = read_witness(url)
    rows = read_executions(url)
    old_pid, new_pid = old.pid, new.pid
    for key in keys:
        job_rows = rows_by_job(rows)[key]
        assert_one_row_per_slot(job_rows, anchor, ended_at)
        # no slot waited for the new process: each ran at its time, as a plain slot
        assert {(r.status, r.trigger) for r in job_rows} == {("success", "schedule")}, [
            (r.scheduled_for, r.status, r.trigger, r.error_message)
            for r in job_rows
            if (r.status, r.trigger) != ("success", "schedule")
        ]
        witnessed = starts_per_slot([s for s in starts if s.job_key == key])
        assert set(witnessed) == {(key, r.scheduled_for) for r in job_rows}
    duplicates = duplicate_starts(starts, per_attempt=False)
    assert duplicates == {}
    # the old process went on firing after it was told to stop, the new one took over
    bridged = [s for s in starts if s.pid == old_pid and s.started_at > reload_at]
    assert len({s.scheduled_for for s in bridged}) >= int(IMPORT_DELAY)
    assert [s for s in starts if s.pid == new_pid]
    assert {s.pid for s in starts} == {old_pid, new_pid}
    p99, worst = lateness(starts)
    assert worst < 1000, worst  # ms
    summary(
        "reload_hand_over",
        fires=len(starts),
        duplicates=extra_starts(duplicates),
        bridged_slots=len({s.scheduled_for for s in bridged}),
        old_stop_s=old_exited_at - reload_at,
        p99_late_ms=p99,
        max_late_ms=worst,
    )


@pytest.mark.timeout(60)
def test_the_gap_of_a_restart_follows_the_misfire_policy(postgres_url, make_cluster, summary):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    [old] = cluster.start(1)
    anchor = next_second(time.time(), lead=0.5)
    create_interval_jobs(url, ["each"], anchor, coalesce=False)
    create_interval_jobs(url, ["coalesced"], anchor)  # coalesce=True, the default
    sleep_until(anchor.timestamp() + 1.5)
    cluster.stop([old])
    stopped_at = time.time()
    sleep_until(stopped_at + 2.5)  # nothing runs: 2-3 slots fall due
    restarted_at = time.time()
    cluster.start(1)
    time.sleep(2.0)
    ended_at = time.time()
    cluster.stop()

    starts = read_witness(url)
    rows = rows_by_job(read_executions(url))
    witnessed = starts_per_slot(starts)
    gaps = {}
    for key in ("each", "coalesced"):
        job_rows = rows[key]
        assert_one_row_per_slot(job_rows, anchor, ended_at)
        caught_up = max(r.scheduled_for for r in job_rows if r.trigger == "catchup")
        gap = [
            r
            for r in job_rows
            if r.created_at.timestamp() >= stopped_at and r.scheduled_for <= caught_up
        ]
        gaps[key] = gap
        assert len(gap) >= 2, gap
        assert gap[-1].trigger == "catchup" and gap[-1].status == "success"
    # coalesce=False: every slot of the gap ran, late, once
    assert [(r.status, r.trigger) for r in gaps["each"]] == [("success", "catchup")] * len(
        gaps["each"]
    )
    # coalesce=True: the newest slot ran, the older ones are missed rows saying why
    newest = gaps["coalesced"][-1].scheduled_for
    for r in gaps["coalesced"][:-1]:
        assert (r.status, r.trigger) == ("missed", "schedule"), r
        assert f"coalesced into the run of {newest.isoformat()}" in (r.error_message or "")
    ran = {(r.job_key, r.scheduled_for) for key in rows for r in rows[key] if r.status == "success"}
    assert set(witnessed) == ran
    assert set(witnessed.values()) == {1}
    # A slot right after the catch-ups may find the last one still `running` (its
    # outcome is written a moment after the job returns) and be `skipped` by the
    # default overlap policy on a loaded machine: the policy, not a fault, never a start.
    others = [r for key in rows for r in rows[key] if r.status not in ("success", "missed")]
    assert all(
        r.status == "skipped" and "max_instances=1" in (r.error_message or "") for r in others
    ), others
    summary(
        "restart_gap",
        fires=len(starts),
        gap_slots=len(gaps["each"]),
        each_catchups=len(gaps["each"]),
        coalesced_missed=len(gaps["coalesced"]) - 1,
        gap_s=restarted_at - stopped_at,
    )
