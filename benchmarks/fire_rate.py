"""Fire rate and lateness: N interval jobs (every second, slots spread evenly over the
second) offer N fires/s to one instance, inline. Measured over a window after a
warm-up: sustained fires/s, lateness (start - scheduled) p50/p99/max, missed fires,
CPU per fire. Baselines on the same offered load: bare APScheduler (in memory,
persists nothing) and hand-written SQL doing the same statements (claim, bulk insert,
grouped outcome writes) without taskmgr's Python around them."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from benchmarks._common import (
    Database,
    Lateness,
    Result,
    cpu_seconds,
    insert_interval_jobs,
    percentile,
    temp_database,
)
from taskmgr import InlineDispatcher, SchedulerService, current_execution
from taskmgr.storage.sqlalchemy.tables import UTCDateTime

SCENARIO = "fire rate"
WORKERS = 8


def _figures(lateness: list[float], expected: int, duration: float, cpu: float) -> dict[str, Any]:
    fired = len(lateness)
    ms = [x * 1000 for x in lateness]
    return {
        "fires/s": round(fired / duration, 1),
        "p50 ms": _round(percentile(ms, 50)),
        "p99 ms": _round(percentile(ms, 99)),
        "max ms": _round(max(ms) if ms else None),
        "missed": max(0, expected - fired),
        "CPU us/fire": round(cpu / fired * 1e6) if fired else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


_record = Lateness()


def bench_job() -> None:
    """The trivial job every taskmgr scenario fires: it records its lateness."""
    started = time.time()
    context = current_execution()
    assert context is not None
    _record.add(context.scheduled_for.timestamp(), started)


def run_taskmgr(
    db: Database, rate: int, duration: float, warmup: float = 1.5, *, instances: int = 1
) -> dict[str, Any]:
    global _record
    record = _record = Lateness()
    services = [
        SchedulerService(
            db.storage(),
            jobs=[bench_job],
            dispatcher=InlineDispatcher(WORKERS),
            heartbeat_interval=2.0,
            heartbeat_timeout=10.0,
        )
        for _ in range(instances)
    ]
    storage = services[0].storage
    storage.open()
    name = services[0].registry.resolve(bench_job)
    first = datetime.now(UTC) + timedelta(seconds=warmup)
    insert_interval_jobs(storage, name, rate, first_at=first)  # type: ignore[arg-type]
    try:
        for service in services:
            service.start()
        window_start = first.timestamp() + warmup
        window_end = window_start + duration
        _sleep_until(window_start)
        cpu0 = cpu_seconds()
        _sleep_until(window_end)
        cpu = cpu_seconds() - cpu0
        time.sleep(0.5)  # let fires scheduled at the end of the window start
    finally:
        for service in services:
            service.shutdown()
        storage.close()
    return _figures(record.window(window_start, window_end), round(rate * duration), duration, cpu)


def run_apscheduler(rate: int, duration: float, warmup: float = 1.5) -> dict[str, Any]:
    from apscheduler.executors.pool import ThreadPoolExecutor as APExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    record = Lateness()
    scheduler = BackgroundScheduler(executors={"default": APExecutor(WORKERS)}, timezone="UTC")
    first = datetime.now(UTC) + timedelta(seconds=warmup)
    base = first.timestamp()

    def bench_job(offset: float) -> None:
        started = time.time()
        # slots are base + offset + k seconds; a fire is never more than a second late
        # here (APScheduler drops later ones), so the slot is recoverable
        scheduled = base + offset + int(started - base - offset)
        record.add(scheduled, started)

    for i in range(rate):
        offset = i / rate
        scheduler.add_job(
            bench_job,
            "interval",
            seconds=1,
            start_date=first + timedelta(seconds=offset),
            args=(offset,),
            misfire_grace_time=1,
            coalesce=True,
        )
    scheduler.start()
    try:
        window_start = base + warmup
        window_end = window_start + duration
        _sleep_until(window_start)
        cpu0 = cpu_seconds()
        _sleep_until(window_end)
        cpu = cpu_seconds() - cpu0
        time.sleep(0.5)
    finally:
        scheduler.shutdown(wait=True)
    return _figures(record.window(window_start, window_end), round(rate * duration), duration, cpu)


_SELECT_DUE = (
    "SELECT id, job_key, next_run_at, trigger FROM taskmgr_jobs "
    "WHERE state = 'active' AND next_run_at <= :now ORDER BY next_run_at LIMIT :limit"
)


class RawSQL:
    """The statements taskmgr's hot path issues, hand-written, with a minimal loop:
    one transaction claims the due jobs (select, compare-and-set update, bulk insert of
    running executions), a thread pool runs them, one writer thread records outcomes
    in batches. No models, no planner, no validation: the floor for this design."""

    def __init__(self, db: Database, record: Lateness, batch: int = 500) -> None:
        self.db = db
        self.record = record
        self.batch = batch
        self.engine = db.engine()
        if db.kind == "sqlite":

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        when = UTCDateTime()
        self.select = (
            sa.text(_SELECT_DUE if db.kind == "sqlite" else _SELECT_DUE + " FOR UPDATE SKIP LOCKED")
            .bindparams(sa.bindparam("now", type_=when))
            .columns(
                sa.column("id"),
                sa.column("job_key"),
                sa.column("next_run_at", when),
                sa.column("trigger"),
            )
        )
        self.move = sa.text(
            "UPDATE taskmgr_jobs SET next_run_at = :next, last_run_at = :slot "
            "WHERE id = :id AND next_run_at = :slot"
        ).bindparams(sa.bindparam("next", type_=when), sa.bindparam("slot", type_=when))
        self.insert = sa.text(
            "INSERT INTO taskmgr_executions (id, job_id, job_key, scheduled_for, attempt, "
            "chain_id, trigger, status, due_at, queued, kwargs, owner, created_at, "
            "dispatched_at) VALUES (:id, :job_id, :job_key, :slot, 1, :id, 'schedule', "
            "'running', :slot, :queued, '{}', 'raw', :now, :now)"
        ).bindparams(sa.bindparam("slot", type_=when), sa.bindparam("now", type_=when))
        self.finish = sa.text(
            "UPDATE taskmgr_executions SET status = 'success', started_at = :started, "
            "completed_at = :done, duration_ms = 0 WHERE id = :id AND owner = 'raw' "
            "AND status = 'running'"
        ).bindparams(sa.bindparam("started", type_=when), sa.bindparam("done", type_=when))
        self.outcomes: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.pool = ThreadPoolExecutor(WORKERS)
        self.stop = threading.Event()
        self.in_flight = threading.Semaphore(2 * WORKERS)

    def claim(self) -> tuple[list[tuple[str, float]], datetime | None]:
        import uuid

        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            if self.db.kind == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            rows = conn.execute(self.select, {"now": (now), "limit": self.batch}).all()
            moves, inserts, runs = [], [], []
            for job_id, key, next_run_at, _trigger in rows:
                slot = next_run_at
                following = slot + timedelta(seconds=1)  # every job is every second
                while following <= now:
                    following += timedelta(seconds=1)
                execution_id = str(uuid.uuid4())
                moves.append({"id": job_id, "slot": (slot), "next": (following)})
                inserts.append(
                    {
                        "id": execution_id,
                        "job_id": job_id,
                        "job_key": key,
                        "slot": (slot),
                        "queued": False,
                        "now": (now),
                    }
                )
                runs.append((execution_id, slot.timestamp()))
            if moves:
                conn.execute(self.move, moves)
                conn.execute(self.insert, inserts)
            conn.commit()
        return runs, None

    def run_one(self, execution_id: str, scheduled: float) -> None:
        started = time.time()
        self.record.add(scheduled, started)
        done = datetime.now(UTC)
        self.outcomes.put(
            {
                "id": execution_id,
                "started": (datetime.fromtimestamp(started, UTC)),
                "done": (done),
            }
        )
        self.in_flight.release()

    def writer(self) -> None:
        while True:
            first = self.outcomes.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 500:
                try:
                    item = self.outcomes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.outcomes.put(None)
                    break
                batch.append(item)
            with self.engine.connect() as conn:
                if self.db.kind == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                conn.execute(self.finish, batch)
                conn.commit()

    def loop(self) -> None:
        while not self.stop.is_set():
            runs, _ = self.claim()
            for execution_id, scheduled in runs:
                self.in_flight.acquire()
                self.pool.submit(self.run_one, execution_id, scheduled)
            if len(runs) < self.batch:
                time.sleep(0.002)  # next slot is at most a few ms away at these rates


def run_raw_sql(db: Database, rate: int, duration: float, warmup: float = 1.5) -> dict[str, Any]:
    # the schema comes from taskmgr's own migrations, so the statements hit the same
    # tables and indexes
    storage = db.storage()
    storage.open()
    first = datetime.now(UTC) + timedelta(seconds=warmup)
    insert_interval_jobs(storage, "x:y", rate, first_at=first)
    storage.close()
    record = Lateness()
    raw = RawSQL(db, record)
    writer = threading.Thread(target=raw.writer, daemon=True)
    loop = threading.Thread(target=raw.loop, daemon=True)
    writer.start()
    loop.start()
    try:
        window_start = first.timestamp() + warmup
        window_end = window_start + duration
        _sleep_until(window_start)
        cpu0 = cpu_seconds()
        _sleep_until(window_end)
        cpu = cpu_seconds() - cpu0
        time.sleep(0.5)
    finally:
        raw.stop.set()
        loop.join()
        raw.pool.shutdown(wait=True)
        raw.outcomes.put(None)
        writer.join()
        raw.engine.dispose()
    return _figures(record.window(window_start, window_end), round(rate * duration), duration, cpu)


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def run(
    rates: list[int],
    duration: float,
    kinds: list[str],
    *,
    baselines: bool = True,
    warmup: float = 1.5,
) -> list[Result]:
    results: list[Result] = []
    for rate in rates:
        case = f"{rate}/s"
        if baselines:
            figures = run_apscheduler(rate, duration, warmup)
            results.append(Result(SCENARIO, "APScheduler (memory)", figures, case=case))
        for kind in kinds:
            with temp_database(kind) as db:
                figures = run_taskmgr(db, rate, duration, warmup)
            results.append(Result(SCENARIO, f"taskmgr {kind}", figures, case=case))
            if baselines:
                with temp_database(kind) as db:
                    figures = run_raw_sql(db, rate, duration, warmup)
                results.append(Result(SCENARIO, f"raw SQL {kind}", figures, case=case))
    return results
