"""Several instances: 1 against 3 scheduler processes on one PostgreSQL database, the
same offered load (interval jobs spread over the second): aggregate sustained fires/s
and lateness, read back from the executions table."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from benchmarks._common import Result, insert_interval_jobs, percentile, temp_database

SCENARIO = "instances"
ROOT = Path(__file__).resolve().parents[1]


def run_instances(
    count: int, rate: int, duration: float, kind: str = "postgres", *, warmup: float = 3.0
) -> dict[str, object]:
    from benchmarks import instance_proc
    from taskmgr.core.registry import JobRegistry

    with temp_database(kind) as db:
        storage = db.storage()
        storage.open()
        name = JobRegistry().resolve(instance_proc.noop)
        first = datetime.now(UTC) + timedelta(seconds=warmup)
        insert_interval_jobs(storage, name, rate, first_at=first)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        run_for = (first.timestamp() - time.time()) + warmup + duration + 1.0
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.instance_proc",
                    db.url,
                    db.schema or "",
                    str(run_for),
                ],
                cwd=ROOT,
                env=env,
            )
            for _ in range(count)
        ]
        try:
            for proc in procs:
                proc.wait(timeout=run_for + 60)
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
                sa.select(c.scheduled_for, c.started_at, c.owner).where(
                    c.scheduled_for >= window_start,
                    c.scheduled_for < window_end,
                    c.status == "success",
                )
            ).all()
        storage.close()
    lateness = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in rows]
    owners = len({r.owner for r in rows})
    return {
        "fires/s": round(len(rows) / duration, 1),
        "p50 ms": _r(percentile(lateness, 50)),
        "p99 ms": _r(percentile(lateness, 99)),
        "missed": round(rate * duration) - len(rows),
        "instances firing": owners,
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run(rate: int, duration: float, *, warmup: float = 3.0) -> list[Result]:
    case = f"{rate}/s offered"
    one = run_instances(1, rate, duration, warmup=warmup)
    three = run_instances(3, rate, duration, warmup=warmup)
    return [
        Result(SCENARIO, "taskmgr x1 postgres", one, case=case, baseline_of="taskmgr x1 postgres"),
        Result(SCENARIO, "taskmgr x3 postgres", three, case=case),
    ]
