"""SIGKILL around deferred tasks, with real processes, on PostgreSQL and one SQLite file.

- ``test_sigkill_while_a_task_runs``: the instance running deferred tasks is killed
  while they run (each witnessed its start, then blocks). A survivor marks them
  ``lost`` within ``heartbeat_timeout + sweep_interval`` (G3); a task without retries
  ends ``lost`` and never runs again; one with retries runs its next attempt, in the
  same chain, to ``success`` on the survivor.
- ``test_sigkill_after_defer``: a process that only defers (single and bulk) is
  killed after its defers returned (``returned``), inside a ``defer_many`` just
  before its COMMIT (``in_batch``), or among a stream of single defers
  (``in_singles``). Every run whose ``defer`` returned exists and starts exactly once
  on the surviving instances (as the task itself recorded); a ``defer_many`` is there
  wholly or not at all; nothing else appears.
- ``test_sigkill_of_the_reaper_keeps_the_retry``: the instance that reaps is killed
  right after its sweep committed the ``lost`` rows; the retry of a task with retries
  was committed with them and runs on the next instance.

Every execution ends with a final status: nothing stays ``pending`` or ``running``.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskmgr import SchedulerService
from tests.jobs.tasks import (
    BLOCKING_KEY,
    BLOCKING_RETRY_KEY,
    KEY,
    blocking_retry_task,
    blocking_task,
)
from tests.jobs.witness import create_witness_table
from tests.reliability.harness import (
    ROOT,
    Cluster,
    Proc,
    Row,
    read_executions,
    read_witness,
    wait_for,
)

pytestmark = pytest.mark.slow

#: Slack over the G3 bound for scheduling noise (a correctness bound, not a timing).
TOLERANCE = 2.0
TASKS_MODULE = ["--module", "tests.jobs.tasks"]
FINAL = ("success", "failed", "timeout", "missed", "skipped", "lost", "cancelled")
#: ``in_singles``: the deferring process is killed once this many defers returned.
KILL_AFTER = 150
SINGLES, BATCHES, BATCH_SIZE = 50, 3, 100


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(taskmgr's database, the witness database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'taskmgr.db'}", f"sqlite:///{tmp_path / 'witness.db'}"
    url = request.getfixturevalue("postgres_url")
    return url, url


def _ended(url: str, expected: int) -> list[Row] | None:
    rows = read_executions(url)
    done = len(rows) >= expected and all(r.status in FINAL for r in rows)
    return rows if done else None


@pytest.mark.timeout(90)
def test_sigkill_while_a_task_runs(urls, make_cluster, timings, summary):
    url, witness_url = urls
    create_witness_table(witness_url)
    cluster: Cluster = make_cluster(url, witness_url)
    [victim] = cluster.start(1, args=TASKS_MODULE)  # alone: it takes every run
    service = SchedulerService(url, jobs=[blocking_task, blocking_retry_task], background=False)
    try:
        once = [service.defer(BLOCKING_KEY, n=0), *service.defer_many(BLOCKING_KEY, [{"n": 1}])]
        retried = [
            service.defer(BLOCKING_RETRY_KEY, n=2),
            *service.defer_many(BLOCKING_RETRY_KEY, [{"n": 3}]),
        ]
    finally:
        service.close()
    first_ids = {e.id for e in once + retried}
    wait_for(
        "every run to start on the victim",
        lambda: {s.execution_id for s in read_witness(witness_url)} >= first_ids,
        timeout=20,
    )
    held = [r for r in read_executions(url) if r.id in first_ids]
    assert {(r.status, r.owner) for r in held} == {("running", victim.instance_id)}, held
    [survivor] = cluster.start(1, args=TASKS_MODULE)

    # The survivor sweeps once it has heartbeated for a heartbeat_timeout: killed as it
    # is ready, the victim is reaped within about the same bound as G3's.
    killed_at = cluster.kill(victim)
    # 4 first attempts + 2 second attempts, all ended
    wait_for(
        "the lost runs to be reaped and retried",
        lambda: _ended(url, len(first_ids) + len(retried)),
        timeout=timings.detection_bound + 20,
        interval=0.05,
    )
    cluster.stop()
    rows = read_executions(url)
    starts = read_witness(witness_url)
    lost = [r for r in rows if r.id in first_ids]
    detection = max(r.completed_at.timestamp() for r in lost if r.completed_at) - killed_at
    chains = collections.defaultdict(list)
    for row in rows:
        chains[row.chain_id].append(row)
    starts_of = collections.defaultdict(list)
    for start in starts:
        starts_of[start.execution_id].append(start.pid)
    summary(
        "deferred_sigkill_mid_run",
        database=url.split(":", 1)[0],
        runs=len(first_ids),
        starts=len(starts),
        detection_s=detection,
        detection_bound_s=timings.detection_bound,
        statuses=dict(collections.Counter(r.status for r in rows)),
    )

    # G3: the victim's runs are lost, within the bound
    assert [r.status for r in lost] == ["lost"] * len(first_ids), lost
    assert 0 <= detection <= timings.detection_bound + TOLERANCE, detection
    assert set(chains) == first_ids  # no run other than the deferred ones
    for execution in once:
        # no retries: lost, and nothing else; it started once, on the victim
        [row] = chains[execution.id]
        assert (row.id, row.attempt, row.status) == (execution.id, 1, "lost")
        assert starts_of[execution.id] == [victim.pid]
    for execution in retried:
        # a second attempt in the same chain, same arguments, ran to success on the survivor
        first, second = sorted(chains[execution.id], key=lambda r: r.attempt)
        assert (first.id, first.attempt, first.status) == (execution.id, 1, "lost")
        assert (second.attempt, second.status, second.trigger) == (2, "success", "retry")
        assert second.owner == survivor.instance_id
        assert second.kwargs == first.kwargs == execution.kwargs
        assert starts_of[first.id] == [victim.pid]
        assert starts_of[second.id] == [survivor.pid]
    assert len(starts) == len(first_ids) + len(retried)
    assert not [r for r in rows if r.status in ("pending", "running")]


@contextmanager
def deferring(url: str, witness_url: str, workdir: Path, mode: str) -> Iterator[Proc]:
    """The ``tests.procs.defer_until_killed`` process; killed at the end if alive."""
    out, err = workdir / "deferrer.out", workdir / "deferrer.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.procs.defer_until_killed",
                url,
                str(workdir / "ids"),
                mode,
                "--singles",
                str(SINGLES),
                "--batches",
                str(BATCHES),
                "--batch-size",
                str(BATCH_SIZE),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "WITNESS_DATABASE_URL": witness_url},
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    proc = Proc("deferrer", popen, out, err)
    try:
        yield proc
    finally:
        if proc.alive():
            popen.kill()
        popen.wait(timeout=10)


def _returned_ids(workdir: Path) -> list[str]:
    """The ids of the defers that returned (complete lines only)."""
    path = workdir / "ids"
    text = path.read_text() if path.exists() else ""
    return text.splitlines()[: text.count("\n")]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["returned", "in_batch", "in_singles"])
def test_sigkill_after_defer(mode, urls, make_cluster, summary, tmp_path):
    url, witness_url = urls
    create_witness_table(witness_url)
    cluster: Cluster = make_cluster(url, witness_url)
    survivors = cluster.start(2, args=TASKS_MODULE)  # they also create the task's row

    with deferring(url, witness_url, tmp_path, mode) as deferrer:

        def ready() -> bool:
            if not deferrer.alive():
                raise AssertionError(f"the deferring process exited: {deferrer.stderr()[-3000:]}")
            if mode == "in_singles":
                return len(_returned_ids(tmp_path)) >= KILL_AFTER
            return "parked" in deferrer.stdout().split()

        wait_for("the moment to kill the deferring process", ready, timeout=30, interval=0.01)
        cluster.kill(deferrer)
    returned = _returned_ids(tmp_path)
    batches = [
        (int(first), int(count))
        for _, first, count in (
            line.split() for line in deferrer.stdout().splitlines() if line.startswith("batch ")
        )
    ]

    seen: list[set[str]] = [set()]

    def settled() -> list[Row] | None:
        # every run ended, and no new one appeared since the last look (a commit the
        # killed process had already sent is in by then)
        rows = _ended(url, len(returned))
        ids = {r.id for r in rows} if rows else set()
        stable, seen[0] = ids == seen[0], ids
        return rows if rows and stable else None

    wait_for("every deferred run to end", settled, timeout=60, interval=0.2)
    cluster.stop()
    starts = read_witness(witness_url)
    rows = read_executions(url)
    ids = {r.id for r in rows}
    extra = ids - set(returned)
    numbers = sorted(r.kwargs["n"] for r in rows)
    per_execution = collections.Counter(s.execution_id for s in starts)
    in_batches = {
        first: sum(first <= n < first + count for n in numbers) for first, count in batches
    }
    summary(
        f"deferred_sigkill_{mode}",
        database=url.split(":", 1)[0],
        returned=len(returned),
        rows=len(rows),
        not_returned=len(extra),
        starts=len(starts),
        batches=in_batches,
        shares=dict(collections.Counter(s.pid for s in starts)),
    )

    # every run whose defer returned exists, once
    assert len(set(returned)) == len(returned)
    assert set(returned) <= ids
    # and started exactly once, on a survivor, and succeeded; no other start
    assert per_execution == dict.fromkeys(ids, 1)
    assert {s.pid for s in starts} <= {p.pid for p in survivors}
    assert collections.Counter(r.status for r in rows) == {"success": len(rows)}
    assert {(r.job_key, r.trigger, r.attempt) for r in rows} == {(KEY, "deferred", 1)}
    # no run is missing in the middle or doubled: the numbers are 0, 1, 2, ...
    assert numbers == list(range(len(rows)))
    # a defer_many is wholly there or not at all
    for (first, count), present in zip(batches, in_batches.values(), strict=True):
        assert present in (0, count), (first, count, present)
    expected = BATCHES * (SINGLES + BATCH_SIZE)
    if mode == "returned":
        assert len(returned) == len(rows) == expected
        assert extra == set()
    elif mode == "in_batch":
        # the batch killed before its COMMIT left no row; the others are all there
        assert len(returned) == len(rows) == expected
        assert extra == set()
        assert batches[-1] == (expected, BATCH_SIZE)
        assert in_batches[expected] == 0
    else:
        # at most the single defer in flight committed without returning
        assert len(returned) >= KILL_AFTER
        assert len(extra) <= 1
        assert numbers[: len(returned)] == list(range(len(returned)))


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_sigkill_of_the_reaper_keeps_the_retry(postgres_url, make_cluster, tmp_path):
    """The instance reaping a dead peer is killed right after its sweep committed the
    ``lost`` rows: the retry of a task with retries must exist by then (G3: with
    retries left, the run gets a new attempt), and run on the next instance."""
    url = postgres_url
    create_witness_table(url)
    cluster: Cluster = make_cluster(url)
    [victim] = cluster.start(1, args=TASKS_MODULE)
    service = SchedulerService(url, jobs=[blocking_retry_task], background=False)
    try:
        first = service.defer(BLOCKING_RETRY_KEY, n=0)
    finally:
        service.close()
    wait_for(
        "the run to start on the victim",
        lambda: [s for s in read_witness(url) if s.execution_id == first.id],
        timeout=20,
    )
    marker = tmp_path / "reaped.pid"
    [reaper] = cluster.start(
        1, args=[*TASKS_MODULE, "--pause-at", "after_reap", "--marker", str(marker)]
    )
    cluster.kill(victim)
    wait_for("the reaper to mark the run lost", marker.exists, timeout=30)
    cluster.kill(reaper)
    rows = read_executions(url)
    # the retry exists as soon as the lost row does (the reaper may have started it)
    assert [(r.attempt, r.status) for r in rows][:1] == [(1, "lost")], rows
    assert [r.attempt for r in rows][:2] == [1, 2], rows
    cluster.start(1, args=TASKS_MODULE)
    rows = wait_for(
        "the run to succeed on a later attempt",
        lambda: (ended := _ended(url, 2)) and ended[-1].status == "success" and ended,
        timeout=30,
    )
    assert [r.chain_id for r in rows] == [first.id] * len(rows)
    assert rows[0].status == "lost"
