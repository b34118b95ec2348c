"""Resources: what one instance costs, idle and firing, measured from outside.

Each scheduler runs in a process of its own (:mod:`benchmarks.resources_proc`) on a
database of its own (a SQLite file, or a PostgreSQL database created for it), so the
server's counters of that database are the process's alone:

- connections: the most ``pg_stat_activity`` rows of its database seen while measured
  (sampled every second);
- RSS: the process's resident memory at the end (``/proc``);
- CPU s/min: user + system CPU time of the process over the window, per minute;
- db tx/s: on PostgreSQL the server's committed and rolled-back transactions of its
  database (``pg_stat_database``); on SQLite the commits counted in the process;
- statements/s: statements counted in the process, where it can count them
  (taskmgr and APScheduler run on an SQLAlchemy engine; the other peers do not);
- fires/s: runs of the trivial job (the load cases).

The idle cases (10, 1,000 and 10,000 hourly jobs, none due while measured; and the
peers with 10 hourly jobs each) run side by side, all at once: idle processes barely
touch the CPU, and this way they see the same machine. The load cases (100 and 1,000
interval jobs due every second, their slots spread over the second) run one at a
time. Where taskmgr can say which of its threads spent the transactions, the
``resources: idle transactions by thread`` table splits them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from benchmarks._common import Result, insert_interval_jobs, postgres_url
from benchmarks._peers import EXTRA, importable

SCENARIO = "resources"
BY_THREAD = "resources: idle transactions by thread"
ROOT = Path(__file__).resolve().parents[1]
#: The idle jobs fire every hour (first due an hour or more after they are stored).
HOURLY = 3600
#: Longer than taskmgr's pool keeps an unused connection (10 s): the burst of start-up
#: is over, what is measured is what stays.
WARMUP = 12.0
#: The threads of a taskmgr instance, as the breakdown names them.
THREADS = ("scheduler", "heartbeat", "reaper", "outcomes", "listen", "other")
PEERS = ("APScheduler 3", "procrastinate", "pgqueuer")
_PEER_PROGRAMS = {"APScheduler 3": "apscheduler", "procrastinate": "procrastinate",
                  "pgqueuer": "pgqueuer"}  # fmt: skip
_PEER_NOTES = {
    "APScheduler 3": "BackgroundScheduler, SQLAlchemyJobStore, 10 hourly jobs; one process, "
    "no coordination",
    "procrastinate": "one worker, 10 hourly periodic tasks, LISTEN/NOTIFY",
    "pgqueuer": "one consumer (PgQueuer: queue and schedule managers), 10 hourly schedules",
}


@dataclass
class Member:
    """One measured process: what runs, on which database, with which jobs."""

    variant: str
    case: str
    kind: str  # "sqlite" | "postgres"
    program: str = "taskmgr"
    jobs: int = 0  # taskmgr: hourly jobs stored before it starts
    rate: int = 0  # taskmgr: jobs due every second
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def idle_case(jobs: int) -> str:
    return f"idle, {jobs:,} jobs"


def rate_case(rate: int) -> str:
    return f"{rate:,} fires/s"


def run(
    job_counts: Sequence[int],
    rates: Sequence[int],
    kinds: Sequence[str],
    *,
    window: float,
    rate_window: float,
    warmup: float = WARMUP,
    repeat: int = 1,
    peers: Sequence[str] = PEERS,
) -> list[Result]:
    """The idle cases (taskmgr at each of ``job_counts`` on each of ``kinds``, the peers
    at 10 jobs) side by side, then each load case alone, ``repeat`` times in turn;
    each figure is the median of the repetitions."""
    idle = [
        Member(f"taskmgr {kind}", idle_case(jobs), kind, jobs=jobs)
        for jobs in job_counts
        for kind in kinds
    ]
    skipped: list[Result] = []
    for peer in peers:
        for kind in kinds:
            if kind != "postgres" and peer != "APScheduler 3":
                continue  # procrastinate and pgqueuer need PostgreSQL
            missing = _missing(peer)
            if missing:
                skipped.append(_skipped(f"{peer} {kind}", missing))
            else:
                program, note = _PEER_PROGRAMS[peer], _PEER_NOTES[peer]
                idle.append(Member(f"{peer} {kind}", idle_case(10), kind, program, note=note))
    loaded = [
        Member(f"taskmgr {kind}", rate_case(rate), kind, rate=rate)
        for rate in rates
        for kind in kinds
    ]
    runs: list[list[Result]] = []
    for _ in range(repeat):
        rows = measure(idle, warmup, window) if idle else []
        for member in loaded:
            rows += measure([member], min(warmup, 5.0), rate_window)
        runs.append(rows)
    return medians(runs) + skipped


_PEER_MODULES = {
    "procrastinate": ("procrastinate", "psycopg_pool"),
    "pgqueuer": ("pgqueuer", "asyncpg"),
}


def _missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or None."""
    modules = _PEER_MODULES.get(peer, ())
    if modules and not importable(*modules):
        return f"{peer} not installed ({EXTRA})"
    return None


def _skipped(variant: str, reason: str) -> Result:
    print(f"{variant} skipped: {reason}", flush=True)
    return Result(SCENARIO, variant, {}, case=idle_case(10), note=f"skipped: {reason}")


def medians(runs: Sequence[Sequence[Result]]) -> list[Result]:
    """Each row of the first run, its figures the median over the runs."""
    out: list[Result] = []
    for row in runs[0]:
        same = [
            r
            for rows in runs
            for r in rows
            if (r.scenario, r.variant, r.case) == (row.scenario, row.variant, row.case)
        ]
        figures: dict[str, Any] = {}
        for key, value in row.figures.items():
            values = [r.figures[key] for r in same if isinstance(r.figures.get(key), int | float)]
            figures[key] = _round(statistics.median(values)) if values else value
        out.append(Result(row.scenario, row.variant, figures, case=row.case, note=row.note))
    return out


def measure(members: Sequence[Member], warmup: float, window: float) -> list[Result]:
    """Start every member's process on a database of its own, let them settle for
    ``warmup`` seconds, then measure them together for ``window`` seconds."""
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(_database(m)) for m in members]
        procs = [
            stack.enter_context(_process(m, url)) for m, url in zip(members, urls, strict=True)
        ]
        for proc in procs:
            proc.wait_ready()
        time.sleep(warmup)
        server = _Server(urls) if any(m.kind == "postgres" for m in members) else None
        before = [proc.sample() for proc in procs]
        xacts_before = server.xacts() if server else {}
        began = time.monotonic()
        peak_conns: dict[str, int] = {}
        while time.monotonic() - began < window:
            time.sleep(min(1.0, max(0.0, window - (time.monotonic() - began))))
            for name, count in (server.connections() if server else {}).items():
                peak_conns[name] = max(peak_conns.get(name, 0), count)
        elapsed = time.monotonic() - began
        after = [proc.sample() for proc in procs]
        xacts_after = server.xacts() if server else {}
        if server is not None:
            server.close()
    rows: list[Result] = []
    for member, url, a, b in zip(members, urls, before, after, strict=True):
        name = _database_name(url)
        counted = _delta(a["counts"], b["counts"])
        figures: dict[str, Any] = {
            "connections": peak_conns.get(name, 0) if member.kind == "postgres" else None,
            "RSS MB": round(b["rss"], 1),
            "CPU s/min": round((b["cpu"] - a["cpu"]) / elapsed * 60, 2),
        }
        if member.kind == "postgres":
            figures["db tx/s"] = _round((xacts_after[name] - xacts_before[name]) / elapsed)
        else:
            commits = counted.get("commits")
            figures["db tx/s"] = _round(commits / elapsed) if commits is not None else None
        statements = counted.get("statements")
        figures["statements/s"] = _round(statements / elapsed) if statements is not None else None
        if member.rate:
            figures["fires/s"] = _round(counted.get("fires", 0) / elapsed)
        rows.append(Result(SCENARIO, member.variant, figures, case=member.case, note=member.note))
        if member.program == "taskmgr" and not member.rate and b["counts"].get("threads"):
            rows += _by_thread(member, a, b, elapsed)
    return rows


def _by_thread(
    member: Member, a: dict[str, Any], b: dict[str, Any], elapsed: float
) -> list[Result]:
    """Transactions (commits, pings, new connections) and CPU per second by thread; CPU
    of threads that ended (the pool's timers) is in ``other``."""
    tx: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    before, after = a["counts"], b["counts"]
    for thread in THREADS:
        count = after["threads"].get(thread, 0) - before["threads"].get(thread, 0)
        tx[thread] = _round(count / elapsed)
        spent = after["cpu"].get(thread, 0.0) - before["cpu"].get(thread, 0.0)
        cpu[thread] = spent
    named = sum(v for k, v in cpu.items() if k != "other")
    cpu["other"] = max(0.0, (b["cpu"] - a["cpu"]) - named)
    cpu = {k: round(v / elapsed * 60 * 1000) for k, v in cpu.items()}
    tx["total"] = _round(sum(tx[t] for t in THREADS))
    cpu["total"] = round((b["cpu"] - a["cpu"]) / elapsed * 60 * 1000)
    return [
        Result(BY_THREAD, member.variant, tx, case=f"{member.case}: transactions/s"),
        Result(BY_THREAD, member.variant, cpu, case=f"{member.case}: CPU ms/min"),
    ]


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {k: v - a.get(k, 0) for k, v in b.items() if isinstance(v, int | float)}


def _round(value: float) -> float:
    return round(value, 2) if abs(value) < 100 else round(value)


# -- databases and processes ---------------------------------------------------------


@contextlib.contextmanager
def _database(member: Member) -> Iterator[str]:
    """A new database for ``member``, with its jobs stored when it is taskmgr."""
    with _empty_database(member.kind) as url:
        if member.program == "taskmgr":
            _store_jobs(url, member)
        yield url


@contextlib.contextmanager
def _empty_database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskmgr-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"bench_res_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url(), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(postgres_url()).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _store_jobs(url: str, member: Member) -> None:
    from benchmarks import resources_proc
    from taskmgr.core.registry import JobRegistry
    from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

    storage = SQLAlchemyStorage(url)
    storage.open()
    try:
        func = JobRegistry().resolve(resources_proc.noop)
        first = datetime.now(UTC) + timedelta(seconds=1)
        count = member.jobs + member.rate
        if count:
            insert_interval_jobs(
                storage, func, count, due=member.rate, first_at=first, idle_every=HOURLY
            )
    finally:
        storage.close()


def _database_name(url: str) -> str:
    return sa.make_url(url).database or ""


class _Server:
    """The PostgreSQL server's counters of the measured databases."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.names = [_database_name(u) for u in urls if u.startswith("postgresql")]
        self.engine = sa.create_engine(postgres_url(), poolclass=sa.NullPool)

    def xacts(self) -> dict[str, int]:
        query = sa.text(
            "SELECT datname, xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = ANY(:names)"
        )
        with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query, {"names": self.names})}

    def connections(self) -> dict[str, int]:
        query = sa.text(
            "SELECT datname, count(*) FROM pg_stat_activity "
            "WHERE datname = ANY(:names) AND backend_type = 'client backend' GROUP BY datname"
        )
        with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query, {"names": self.names})}

    def close(self) -> None:
        self.engine.dispose()


class _Proc:
    """A running ``benchmarks.resources_proc``, talked to over its standard streams."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def _line(self, timeout: float) -> str:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"benchmark process {self.proc.args!r} exited")
            if line.startswith(("ready", "{")):
                return line
        raise RuntimeError("benchmark process did not answer")

    def wait_ready(self) -> None:
        self._line(120)

    def sample(self) -> dict[str, Any]:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write("stats\n")
        stdin.flush()
        counts = json.loads(self._line(30))
        return {"counts": _totals(counts), "cpu": _cpu(self.proc.pid), "rss": _rss(self.proc.pid)}


def _short(name: str) -> str:
    short = name.removeprefix("taskmgr-")
    return short if short in THREADS else "other"


def _totals(counts: dict[str, Any]) -> dict[str, Any]:
    """Statements and commits in all, transactions (commits, pings, new connections)
    and CPU seconds per thread, named as :data:`THREADS` does."""
    if not counts:
        return {}
    threads: dict[str, int] = {}
    for key in ("commits", "pings", "connects"):
        for name, count in counts.get(key, {}).items():
            threads[_short(name)] = threads.get(_short(name), 0) + count
    cpu: dict[str, float] = {}
    for name, seconds in counts.get("cpu", {}).items():
        cpu[_short(name)] = cpu.get(_short(name), 0.0) + seconds
    return {
        "cpu": cpu,
        "statements": sum(counts.get("statements", {}).values()),
        "commits": sum(counts.get("commits", {}).values()),
        "fires": counts.get("fires", 0),
        "threads": threads,
    }


@contextlib.contextmanager
def _process(member: Member, url: str) -> Iterator[_Proc]:
    env = {**os.environ, **member.env}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (member.env.get("PYTHONPATH"), str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.resources_proc", member.program, url],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield _Proc(proc)
    finally:
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> float:
    """Resident memory of process ``pid``, in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
