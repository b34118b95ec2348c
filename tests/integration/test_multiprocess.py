"""G1 with real processes: two SchedulerService processes on one database, 20 jobs
every second for 8 s: every slot starts exactly once, counted from rows the jobs
themselves wrote (not from taskmgr's own bookkeeping)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskmgr import Interval, SchedulerService
from tests.jobs.witness import create_witness_table, witness, witness_table
from tests.services import require_postgres

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOBS = 20
DURATION = 8.0
PROCESSES = 2


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'taskmgr.db'}"
        return
    base = require_postgres()
    name = f"taskmgr_mp_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_processes(url: str, witness_url: str) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "WITNESS_DATABASE_URL": witness_url, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.procs.run_service", url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the service started (or died)
        if not line.startswith("ready"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"scheduler process did not start: {line!r} {err[-2000:]}")
    return procs


def stop_processes(procs: list[subprocess.Popen[str]]) -> list[str]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    errors = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert proc.returncode == 0, err[-3000:]
        errors.append(err)
    return errors


def test_two_processes_start_each_slot_exactly_once(database_url: str, tmp_path: Path) -> None:
    witness_url = (
        f"sqlite:///{tmp_path / 'witness.db'}"
        if database_url.startswith("sqlite")
        else database_url
    )
    create_witness_table(witness_url)
    # jobs anchored a few seconds ahead, so both processes are up for the first slot
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    setup = SchedulerService(database_url, jobs=[witness])
    for i in range(JOBS):
        setup.create_job(
            f"witness-{i:02d}", witness, trigger=Interval(1, start=anchor), misfire_grace_time=5
        )
    setup.close()

    procs = start_processes(database_url, witness_url)
    try:
        time.sleep(max(0.0, (anchor - datetime.now(UTC)).total_seconds()) + DURATION)
        stopped_at = datetime.now(UTC)
    finally:
        stderr = stop_processes(procs)

    engine = sa.create_engine(witness_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(witness_table)).all()
    engine.dispose()
    starts = collections.Counter((row.job_key, row.scheduled_for) for row in rows)
    duplicates = {slot: n for slot, n in starts.items() if n > 1}
    assert duplicates == {}, f"slots started more than once: {duplicates}"

    # every slot from the anchor until shortly before the stop was started once
    last = stopped_at - timedelta(seconds=1.5)
    expected = {
        (f"witness-{i:02d}", (anchor + timedelta(seconds=k)).isoformat())
        for i in range(JOBS)
        for k in range(int((last - anchor).total_seconds()) + 1)
    }
    assert len(expected) >= JOBS * (int(DURATION) - 1)
    missing = sorted(expected - set(starts))
    assert missing == [], f"{len(missing)} never started, e.g. {missing[:5]}; {stderr[0][-3000:]}"

    # taskmgr's own history agrees: one successful execution per witnessed start
    check = SchedulerService(database_url, jobs=[witness])
    executions = []
    page = check.list_executions(limit=500)
    while True:
        executions.extend(page.items)
        if page.next_cursor is None:
            break
        page = check.list_executions(limit=500, cursor=page.next_cursor)
    check.close()
    slots = collections.Counter((e.job_key, e.scheduled_for.isoformat()) for e in executions)
    assert max(slots.values()) == 1
    succeeded = {
        (e.job_key, e.scheduled_for.isoformat()) for e in executions if e.status == "success"
    }
    assert succeeded == set(starts)
    owners = {e.owner for e in executions if e.owner}
    assert len(owners) <= PROCESSES
