"""Restart PostgreSQL in the middle of a run (``pg_ctl stop`` then ``start``).

Every instance survives (loop, heartbeat, reaper and listener reconnect by
themselves) and fires again within seconds of the database returning; no slot
starts twice; the slots that fell due during the outage follow the misfire policy
(``coalesce=True``: one catch-up run per job, the older slots ``missed``).

The server is the test's own (``initdb`` in a temporary directory, a free port), so
the tests running beside it keep theirs; it needs PostgreSQL's server binaries.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
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
    wait_for,
)
from tests.reliability.private_postgres import (
    PrivatePostgres,
    private_postgres,
    why_no_private_postgres,
)
from tests.services import services_required

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 20
#: Generous bound on "resumes within seconds" (the loops back off up to 30 s).
RESUME_BOUND = 15.0


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    """A server of this test's own: restarting the shared one would break the tests
    running beside it."""
    missing = why_no_private_postgres()
    if missing:
        reason = f"cannot run a private PostgreSQL server here ({missing})"
        if services_required():
            pytest.fail(reason)
        pytest.skip(reason)
    with private_postgres() as started:
        yield started


def _restart(server: PrivatePostgres, outage: float) -> None:
    """``restart``, or with ``outage``: stop, stay down that long, start."""
    server.stop()
    time.sleep(outage)
    server.start()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("outage", [0.0, 4.0], ids=["restart", "down_4s"])
def test_instances_resume_after_a_postgres_restart(outage, server, make_cluster, timings, summary):
    url = server.url
    create_witness_table(url)
    cluster = make_cluster(url)
    procs = cluster.start(3)
    keys = [f"restart-{i:02d}" for i in range(JOBS)]
    anchor = next_second(time.time(), lead=1.0)
    create_interval_jobs(url, keys, anchor)  # coalesce=True, misfire grace 60 s
    sleep_until(anchor.timestamp() + 3.3)
    down_at = time.time()
    _restart(server, outage)
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
