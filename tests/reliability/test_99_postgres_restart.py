"""Restart PostgreSQL in the middle of a run (``pg_ctlcluster ... restart``).

Every instance survives (loop, heartbeat, reaper and listener reconnect by
themselves) and fires again within seconds of the database returning; no slot
starts twice; the slots that fell due during the outage follow the misfire policy
(``coalesce=True``: one catch-up run per job, the older slots ``missed``).

Needs root and a local cluster managed by ``pg_ctlcluster``; skipped otherwise. It
runs last in this directory (file name), and always leaves the cluster running.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

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
    wait_for,
)
from tests.services import services_required

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 20
#: Generous bound on "resumes within seconds" (the loops back off up to 30 s).
RESUME_BOUND = 15.0


def _cluster_command(action: str) -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action]


def _postgres_ready() -> bool:
    probe = subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-q"], check=False, timeout=10, capture_output=True
    )
    return probe.returncode == 0


def _ensure_running() -> None:
    if not _postgres_ready():
        subprocess.run(_cluster_command("start"), check=False, timeout=60, capture_output=True)
    wait_for("PostgreSQL to accept connections", _postgres_ready, timeout=60, interval=0.5)


@pytest.fixture
def restartable_postgres() -> None:
    missing = [
        what
        for what, ok in (
            ("root", os.geteuid() == 0),
            ("pg_ctlcluster", shutil.which("pg_ctlcluster") is not None),
            ("pg_isready", shutil.which("pg_isready") is not None),
            ("/etc/postgresql", Path("/etc/postgresql").is_dir()),
        )
        if not ok
    ]
    if missing:
        reason = f"cannot restart PostgreSQL here (missing: {', '.join(missing)})"
        if services_required():
            pytest.fail(reason)
        pytest.skip(reason)


def _restart(outage: float) -> None:
    """``restart``, or with ``outage``: stop, stay down that long, start."""
    if not outage:
        subprocess.run(_cluster_command("restart"), check=True, timeout=60, capture_output=True)
        return
    subprocess.run(_cluster_command("stop"), check=True, timeout=60, capture_output=True)
    time.sleep(outage)
    subprocess.run(_cluster_command("start"), check=True, timeout=60, capture_output=True)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("outage", [0.0, 4.0], ids=["restart", "down_4s"])
def test_instances_resume_after_a_postgres_restart(
    outage, restartable_postgres, postgres_url, make_cluster, timings, summary
):
    url = postgres_url
    create_witness_table(url)
    cluster = make_cluster(url)
    procs = cluster.start(3)
    keys = [f"restart-{i:02d}" for i in range(JOBS)]
    anchor = next_second(time.time(), lead=1.0)
    create_interval_jobs(url, keys, anchor)  # coalesce=True, misfire grace 60 s
    sleep_until(anchor.timestamp() + 3.3)
    down_at = time.time()
    try:
        _restart(outage)
    finally:
        _ensure_running()
    up_at = time.time()

    def every_instance_fired() -> dict[int, float] | None:
        firsts: dict[int, float] = {}
        for start in read_witness(url):
            if start.started_at > up_at:
                firsts.setdefault(start.pid, start.started_at)
        return firsts if all(p.pid in firsts for p in procs) else None

    firsts = wait_for(
        "every instance to fire again", every_instance_fired, timeout=RESUME_BOUND + 15
    )
    time.sleep(2.0)
    ended_at = time.time()
    cluster.stop()

    starts = read_witness(url)
    rows = read_executions(url)
    duplicates = duplicate_starts(starts, per_attempt=False)
    resume = {p.name: firsts[p.pid] - up_at for p in procs}
    by_key = collections.defaultdict(list)
    for r in rows:
        by_key[r.job_key].append(r)
    catchups = collections.Counter(r.job_key for r in rows if r.trigger == "catchup")
    missed = collections.Counter(r.job_key for r in rows if r.status == "missed")
    statuses = collections.Counter(r.status for r in rows)
    summary(
        f"f9_postgres_{'restart' if not outage else f'down_{outage:g}s'}",
        fires=len(starts),
        duplicates=extra_starts(duplicates),
        lost=statuses["lost"],
        restart_s=up_at - down_at,
        resume_after_up_s=resume,
        max_resume_s=max(resume.values()),
        catchups=sum(catchups.values()),
        missed=sum(missed.values()),
        statuses=dict(statuses),
    )

    assert duplicates == {}
    assert max(resume.values()) <= RESUME_BOUND, resume
    assert statuses.keys() <= {"success", "missed", "skipped"}, statuses
    last = utc(ended_at) - timedelta(seconds=2)
    for key in keys:
        job_rows = sorted(by_key[key], key=lambda r: r.scheduled_for)
        slots = [r.scheduled_for for r in job_rows]
        # G2: one row per slot, none skipped over by the outage
        assert slots == [anchor + timedelta(seconds=k) for k in range(len(slots))], key
        assert slots[-1] >= last
        runs = {r.scheduled_for: r for r in job_rows}
        for r in job_rows:
            if r.status == "missed":
                # coalesced into a catch-up run of the same job, which ran
                text = r.error_message or ""
                assert "coalesced into the run of " in text, r
                kept = runs[next(s for s in runs if text.endswith(f"the run of {s.isoformat()}"))]
                assert kept.trigger == "catchup" and kept.status == "success"
                assert kept.scheduled_for > r.scheduled_for
            if r.status == "skipped":  # its previous run was still recording its start
                assert "still active" in (r.error_message or ""), r
            if r.trigger == "catchup":
                assert [s for s in starts if s.slot == (key, r.scheduled_for)].__len__() == 1
        missed_slots = {(key, r.scheduled_for) for r in job_rows if r.status == "missed"}
        assert not [s for s in starts if s.slot in missed_slots]
    if outage:
        # slots fell due while it was down: one catch-up per job, the rest missed
        assert set(catchups) == set(keys) and set(catchups.values()) == {1}, catchups
        assert all(missed[key] >= 1 for key in keys), missed
