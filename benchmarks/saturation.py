"""Saturation: raise the offered rate until each system falls behind, and print the
curve. N interval jobs every second (slots spread evenly over the second, misfire
grace 1 s, trivial jobs) offer N fires/s. At each rate, in turn:

- taskmgr on SQLite and on PostgreSQL, 1 instance and 3 (aggregate), each instance a
  process of its own (``benchmarks/instance_proc.py``, ``InlineDispatcher(8)``);
  lateness and every slot's outcome are read back from the executions table;
- APScheduler 3 in memory (``BackgroundScheduler``, 8 threads) in this process;
- APScheduler 4 (pre-release; ``SQLAlchemyDataStore`` on the same PostgreSQL) and
  procrastinate's periodic tasks (one per job, every second), each in a process of
  its own run by the Python of a virtual environment that has them
  (``benchmarks/peer_saturation.py``; see :data:`PEERS_PYTHON`).

A system has fallen behind at a rate when a slot of the window did not start (missed,
skipped, no row yet), or its lateness p99 is over 1 s; it is not offered more after
that. Past that point taskmgr must still account for every slot: each one ran, or has
a row that ended with its reason (``missed``, ``skipped``: "other"), or had not been
reached when the instances stopped (``unclaimed at stop``: the job's ``next_run_at``
is still before it, so a restart records it); ``unaccounted`` (no row and not left to
claim, or a row left ``running``) must be 0. Its memory stays bounded (peak RSS per
instance).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import fire_rate
from benchmarks._common import Result, insert_interval_jobs, percentile, temp_database
from benchmarks._peers import libpq_url

SCENARIO = "saturation"
SUMMARY = "saturation: the most each sustains"
ROOT = Path(__file__).resolve().parents[1]
#: The Python that runs APScheduler 4 and procrastinate (they cannot share
#: taskmgr's environment: taskmgr needs APScheduler 3). Made by
#: ``python -m venv /tmp/taskmgr-bench-peers && /tmp/taskmgr-bench-peers/bin/pip install
#: 'apscheduler==4.0.0a6' 'sqlalchemy[asyncio]' 'psycopg[binary,pool]' sniffio procrastinate``.
PEERS_PYTHON = os.environ.get("TASKMGR_BENCH_PEERS_PYTHON", "/tmp/taskmgr-bench-peers/bin/python")  # noqa: S108
#: A rate fails when its p99 lateness is over this (ms), or a slot was missed.
BEHIND_MS = 1000.0
GRACE = 1.0


def behind(figures: dict[str, Any]) -> bool:
    p99 = figures.get("p99 ms")
    left = figures.get("missed") or figures.get("unaccounted") or figures.get("unclaimed at stop")
    return bool(left or figures.get("other")) or p99 is None or p99 > BEHIND_MS


def run_taskmgr(
    kind: str, instances: int, rate: int, duration: float, *, warmup: float = 2.0
) -> dict[str, Any]:
    from benchmarks import instance_proc
    from taskmgr.core.registry import JobRegistry

    with temp_database(kind) as db:
        storage = db.storage()
        storage.open()  # the schema, before the instances start
        name = JobRegistry().resolve(instance_proc.noop)
        command = [sys.executable, "-m", "benchmarks.instance_proc", db.url, db.schema or ""]
        procs = [
            subprocess.Popen(
                [*command, str(warmup + duration + 300), "stdin"],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *_path()])},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(instances)
        ]
        reports: list[dict[str, Any]] = []
        try:
            for proc in procs:  # started (imports, registration) before any slot
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("an instance did not start")
            first = datetime.now(UTC) + timedelta(seconds=1.5)
            insert_interval_jobs(storage, name, rate, first_at=first, grace=GRACE)
            end = first.timestamp() + warmup + duration + 1.5
            time.sleep(max(0.0, end - time.time()))
            for proc in procs:
                out, _ = proc.communicate(timeout=120)  # closes its stdin: it stops
                lines = [line for line in out.splitlines() if line.startswith("{")]
                reports.append(json.loads(lines[-1]) if lines else {})
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        window_start = first + timedelta(seconds=warmup)
        window_end = window_start + timedelta(seconds=duration)
        c = storage.tables.executions.c
        with storage.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.scheduled_for, c.started_at, c.status, c.owner).where(
                    c.scheduled_for >= window_start, c.scheduled_for < window_end
                )
            ).all()
            frontier = conn.execute(sa.select(storage.tables.jobs.c.next_run_at)).scalars().all()
        storage.close()
    # slots of the window the instances had not reached when they stopped (behind): no
    # row yet, as the job's next_run_at says; a restart would record them (missed)
    unclaimed = sum(_slots_from(at, window_start, window_end) for at in frontier)
    others: dict[str, int] = {}  # rows that never started, but for the missed ones
    for row in rows:
        if row.started_at is None and row.status != "missed":
            others[row.status] = others.get(row.status, 0) + 1
    # a slot is accounted for by a run, a row that ended with its reason (missed,
    # skipped, cancelled), or a place left to claim; not by a row left running
    hanging = others.get("running", 0) + others.get("pending", 0)
    ran = [r for r in rows if r.started_at is not None]
    late = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in ran]
    missed = sum(1 for r in rows if r.status == "missed")
    return {
        "fires/s": round(len(ran) / duration, 1),
        "p50 ms": _r(percentile(late, 50)),
        "p99 ms": _r(percentile(late, 99)),
        "max ms": _r(max(late) if late else None),
        "missed": missed,
        "unclaimed at stop": unclaimed,
        "unaccounted": round(rate * duration) - len(rows) - unclaimed + hanging,
        "other": ", ".join(f"{n} {status}" for status, n in sorted(others.items())) or None,
        "RSS MB": max((r.get("rss_mb", 0.0) for r in reports), default=None),
        "instances firing": len({r.owner for r in ran}),
    }


def _slots_from(next_run_at: datetime | None, start: datetime, end: datetime) -> int:
    """How many of one job's slots (every second) in ``[start, end)`` are at or after
    its ``next_run_at``."""
    if next_run_at is None or next_run_at >= end:
        return 0
    if next_run_at.tzinfo is None:
        next_run_at = next_run_at.replace(tzinfo=UTC)
    first = max(next_run_at, start)
    # the job's slots are next_run_at + k seconds
    skip = math.ceil((first - next_run_at).total_seconds() - 1e-9)
    slot = next_run_at + timedelta(seconds=skip)
    return max(0, math.ceil((end - slot).total_seconds() - 1e-9))


def run_peer(peer: str, rate: int, duration: float, *, warmup: float = 4.0) -> dict[str, Any]:
    with temp_database("postgres") as db:
        assert db.schema is not None
        proc = subprocess.run(
            [
                PEERS_PYTHON,
                str(ROOT / "benchmarks" / "peer_saturation.py"),
                peer,
                libpq_url(db),
                db.schema,
                str(rate),
                str(warmup),
                str(duration),
            ],
            capture_output=True,
            text=True,
            timeout=warmup * 2 + duration + 180,
            cwd=ROOT / "benchmarks",
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{peer} failed: {proc.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def peers_available() -> str | None:
    """Why the peers in their own environment cannot run, or None."""
    if not Path(PEERS_PYTHON).exists():
        return f"no {PEERS_PYTHON} (set TASKMGR_BENCH_PEERS_PYTHON; see benchmarks/saturation.py)"
    check = subprocess.run(
        [PEERS_PYTHON, "-c", "import apscheduler.datastores.sqlalchemy, procrastinate"],
        capture_output=True,
        text=True,
    )
    return None if check.returncode == 0 else "APScheduler 4 or procrastinate not installed there"


def _path() -> list[str]:
    given = os.environ.get("PYTHONPATH")
    return given.split(os.pathsep) if given else []


def _aps3(rate: int, duration: float) -> dict[str, Any]:
    # it logs every fire it drops; the figures count them
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return fire_rate.run_apscheduler(rate, duration, 1.5)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run(
    rates: Sequence[int],
    duration: float,
    kinds: Sequence[str],
    *,
    instances: Sequence[int] = (1, 3),
    peers: Sequence[str] = (
        "APScheduler 3 (memory)",
        "APScheduler 4 postgres",
        "procrastinate postgres",
    ),
) -> list[Result]:
    """The curve: each variant at each rate in turn (interleaved, so a noisy moment
    of the machine hits them all), until it falls behind."""
    variants: list[tuple[str, Any]] = []
    for kind in kinds:
        for count in instances:
            variants.append(
                (
                    f"taskmgr {kind} x{count}",
                    lambda r, k=kind, n=count: run_taskmgr(k, n, r, duration),
                )
            )
    skip_note = peers_available() if "postgres" in kinds else "PostgreSQL not reachable"
    for peer in peers:
        if peer.startswith("APScheduler 3"):
            variants.append((peer, lambda r: _aps3(r, duration)))
        elif skip_note is None:
            name = "apscheduler4" if peer.startswith("APScheduler 4") else "procrastinate"
            variants.append((peer, lambda r, p=name: run_peer(p, r, duration)))
    results: list[Result] = []
    best: dict[str, int | None] = {name: None for name, _ in variants}
    failed: set[str] = set()
    for rate in rates:
        for name, measure in variants:
            if name in failed:
                continue
            load = os.getloadavg()[0]
            print(f"  {name} at {rate}/s (load {load:.2f}) ...", flush=True)
            try:
                figures = measure(rate)
            except Exception as exc:  # a peer crashing at a rate has fallen behind there
                figures, note = {}, f"failed: {str(exc)[:200]}"
            else:
                note = ""
            figures["load"] = round(load, 2)
            results.append(Result(SCENARIO, name, figures, case=f"{rate}/s", note=note))
            if behind(figures):
                failed.add(name)
            else:
                best[name] = rate
    for peer in peers:
        if not peer.startswith("APScheduler 3") and skip_note is not None:
            results.append(Result(SCENARIO, peer, {}, case="-", note=f"skipped: {skip_note}"))
    for name, most in best.items():
        note = "" if name in failed else f"did not fall behind up to {rates[-1]}/s"
        results.append(
            Result(
                SUMMARY,
                name,
                {"fires/s": most},
                case="max sustainable",
                note=note,
                # 3 instances are compared with 1 on the same database (scale-out)
                baseline_of=name if name.endswith(" x1") else None,
            )
        )
    return results
