"""One scheduler process for the resources scenario:
``python -m benchmarks.resources_proc VARIANT URL``.

VARIANT is ``taskmgr`` (a started :class:`SchedulerService` on the jobs the parent
stored), ``apscheduler`` (APScheduler 3, ``BackgroundScheduler`` with a
``SQLAlchemyJobStore``), ``procrastinate`` (a worker) or ``pgqueuer`` (a consumer);
the peers declare 10 hourly jobs of their own. The process prints ``ready`` once
started, then answers each ``stats`` line on its standard input with one JSON line
(statements and commits per thread, where it can count them; the trivial job's
runs), and stops at ``stop`` or the end of its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

#: The jobs each peer declares: hourly, none due while measured (unless the hour turns).
PEER_JOBS = 10
_fires = Counter[str]()


def noop() -> None:
    """The trivial job."""
    _fires["fires"] += 1


class Counts:
    """Statements, commits, pings and new connections through an engine, per thread
    name (the parts of an instance run on threads of their own: ``taskmgr-scheduler``,
    ``taskmgr-heartbeat``...)."""

    def __init__(self) -> None:
        self.counts = {k: Counter[str]() for k in ("statements", "commits", "pings", "connects")}

    def watch(self, engine: sa.Engine) -> None:
        statements, commits = self.counts["statements"], self.counts["commits"]
        pings, connects = self.counts["pings"], self.counts["connects"]

        def statement(*_args: Any) -> None:
            statements[_thread()] += 1

        def commit(_conn: Any) -> None:
            commits[_thread()] += 1

        def connect(*_args: Any) -> None:
            connects[_thread()] += 1

        sa.event.listen(engine, "before_cursor_execute", statement)
        sa.event.listen(engine, "commit", commit)
        sa.event.listen(engine, "connect", connect)
        ping = engine.dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            pings[_thread()] += 1
            return ping(dbapi_connection)

        setattr(engine.dialect, "do_ping", counted_ping)  # noqa: B010 - a method, replaced

    def snapshot(self) -> dict[str, Any]:
        counts = {k: dict(v) for k, v in self.counts.items()}
        return {**counts, "cpu": thread_cpu(), "fires": _fires["fires"]}


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) spent so far per thread name, as :func:`_thread`
    names them (Linux; empty elsewhere)."""
    spent: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        name = _thread(thread.name)
        spent[name] = spent.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return spent


def _thread(name: str | None = None) -> str:
    name = threading.current_thread().name if name is None else name
    return name if name.startswith("taskmgr-") else "other"


def _serve(snapshot: Callable[[], dict[str, Any]]) -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(snapshot()), flush=True)
        elif line.strip() == "stop":
            return


def _libpq(url: str) -> str:
    """``url`` as libpq and asyncpg take it (no SQLAlchemy driver name)."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def run_taskmgr(url: str) -> None:
    from taskmgr import InlineDispatcher, SchedulerService

    counts = Counts()
    # the defaults a host gets (settings from the environment: none set here)
    service = SchedulerService(url, jobs=[noop], dispatcher=InlineDispatcher(8))
    service.start()
    try:
        engine = getattr(service.storage, "engine", None)
        if isinstance(engine, sa.Engine):
            counts.watch(engine)
        _serve(counts.snapshot)
    finally:
        service.shutdown()


def run_apscheduler(url: str) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    counts = Counts()
    engine = sa.create_engine(url)
    counts.watch(engine)
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(engine=engine)})
    scheduler.start()
    for i in range(PEER_JOBS):
        scheduler.add_job(noop, "interval", hours=1, id=f"hourly-{i}", replace_existing=True)
    try:
        _serve(counts.snapshot)
    finally:
        scheduler.shutdown()
        engine.dispose()


def run_procrastinate(url: str) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_libpq(url)))

    def hourly(timestamp: int) -> None:
        noop()

    task = app.task(name="bench.hourly")(hourly)
    for i in range(PEER_JOBS):
        app.periodic(cron="0 * * * *", periodic_id=f"hourly-{i}")(task)

    async def main() -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            worker = asyncio.create_task(app.run_worker_async(install_signal_handlers=False))
            await asyncio.to_thread(_serve, lambda: {})
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    asyncio.run(main())


def run_pgqueuer(url: str) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, PgQueuer, Queries

    dsn = _libpq(url)

    async def main() -> None:
        setup = await asyncpg.connect(dsn)
        await Queries(AsyncpgDriver(setup)).install()
        await setup.close()
        conn = await asyncpg.connect(dsn)
        pgq = PgQueuer(AsyncpgDriver(conn))

        async def entrypoint(_job: Any) -> None:
            noop()

        pgq.entrypoint("bench_noop")(entrypoint)
        for i in range(PEER_JOBS):

            async def hourly(_schedule: Any) -> None:
                noop()

            pgq.schedule(f"hourly_{i}", "0 * * * *")(hourly)
        consumer = asyncio.create_task(pgq.run())
        await asyncio.to_thread(_serve, lambda: {})
        pgq.shutdown.set()
        await consumer
        await conn.close()

    asyncio.run(main())


VARIANTS: dict[str, Callable[[str], None]] = {
    "taskmgr": run_taskmgr,
    "apscheduler": run_apscheduler,
    "procrastinate": run_procrastinate,
    "pgqueuer": run_pgqueuer,
}

if __name__ == "__main__":
    # through the package, so the job function is named as the parent registered it
    from benchmarks import resources_proc

    resources_proc.VARIANTS[sys.argv[1]](sys.argv[2])
