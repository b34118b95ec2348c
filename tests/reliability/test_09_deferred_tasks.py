"""Deferred tasks across processes: three scheduler processes share the deferred runs
of one task, each run starts exactly once (as the task itself recorded) and every
execution ends; and many concurrent defers with one idempotency key, from three
processes at once, make one execution. On PostgreSQL and on one SQLite file."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskmgr import SchedulerService
from tests.jobs.tasks import KEY, witness_task
from tests.jobs.witness import create_witness_table
from tests.reliability.harness import ROOT, read_executions, read_witness, wait_for

pytestmark = pytest.mark.slow

TASKS = 2000
PROCESSES = 3
BATCH = 100


@pytest.fixture(params=["postgres", "sqlite"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'taskmgr.db'}", f"sqlite:///{tmp_path / 'witness.db'}"
    url = request.getfixturevalue("postgres_url")
    return url, url


@pytest.mark.timeout(240)
def test_each_deferred_run_starts_exactly_once_across_processes(urls, make_cluster, summary):
    url, witness_url = urls
    create_witness_table(witness_url)
    cluster = make_cluster(url, witness_url)
    cluster.start(PROCESSES, args=["--module", "tests.jobs.tasks"])
    service = SchedulerService(url, jobs=[witness_task], background=False)
    deferred_at = time.time()
    try:
        for start in range(0, TASKS, BATCH):
            if start % (2 * BATCH):  # half of them one by one, half in batches
                for n in range(start, start + BATCH):
                    service.defer(KEY, n=n)
            else:
                service.defer_many(KEY, [{"n": n} for n in range(start, start + BATCH)])
    finally:
        service.close()
    deferred_s = time.time() - deferred_at

    def all_ended():
        rows = read_executions(url)
        ended = len(rows) >= TASKS and all(r.status not in ("pending", "running") for r in rows)
        return rows if ended else None

    rows = wait_for("every deferred run to end", all_ended, timeout=180, interval=0.5)
    cluster.stop()
    starts = read_witness(witness_url)
    per_execution = collections.Counter(s.execution_id for s in starts)
    shares = collections.Counter(s.pid for s in starts)
    summary(
        "deferred_tasks_three_processes",
        database=url.split(":", 1)[0],
        tasks=TASKS,
        starts=len(starts),
        defers_per_s=round(TASKS / deferred_s),
        shares=dict(sorted(shares.items())),
    )
    assert len(rows) == TASKS
    assert collections.Counter(r.status for r in rows) == {"success": TASKS}
    assert {r.trigger for r in rows} == {"deferred"}
    assert len(starts) == TASKS
    assert set(per_execution.values()) == {1}
    assert set(per_execution) == {r.id for r in rows}


@pytest.mark.timeout(120)
def test_one_idempotency_key_from_three_processes_is_one_execution(urls, make_cluster):
    url, witness_url = urls
    create_witness_table(witness_url)
    cluster = make_cluster(url, witness_url)
    cluster.start(1, args=["--module", "tests.jobs.tasks"])  # creates the task's row
    start = time.time() + 3.0
    bursts = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.procs.defer_burst", url, "order-1", "17", str(start)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "WITNESS_DATABASE_URL": witness_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [burst.communicate(timeout=90) for burst in bursts]
    for burst, (_, err) in zip(bursts, outputs, strict=True):
        assert burst.returncode == 0, err[-3000:]
    ids = [line for out, _ in outputs for line in out.split()]
    assert len(ids) == 51
    assert len(set(ids)) == 1
    wait_for(
        "the one run to end",
        lambda: [r for r in read_executions(url) if r.status == "success"] or None,
        timeout=30,
    )
    cluster.stop()
    rows = read_executions(url)
    assert [r.id for r in rows] == ids[:1]
    assert len(read_witness(witness_url)) == 1
