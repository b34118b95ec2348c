"""The fault-injection harness: real scheduler processes, a witness record, verdicts.

- :class:`Cluster` starts ``tests.procs.run_service`` processes (stdout and stderr to
  files, so a chatty process can never block on a full pipe), signals them by pid and
  always stops them: SIGTERM, then SIGKILL for whatever is left.
- :func:`read_witness` reads the starts the jobs recorded themselves (the
  independent record); :func:`read_executions` reads taskmgr's own rows.
- :func:`duplicate_starts`, :func:`missing_slots`, :func:`lateness` compute the
  verdicts from those records, never from the scheduler's bookkeeping alone.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from taskmgr.storage.sqlalchemy.tables import build_tables
from tests.jobs.witness import witness_table

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass(frozen=True)
class Timings:
    """Liveness settings given to every process (short, so a scenario stays short)."""

    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 2.5
    sweep_interval: float = 0.5
    poll_interval: float = 0.2

    @property
    def detection_bound(self) -> float:
        """G3: a dead owner's executions are ``lost`` within this many seconds."""
        return self.heartbeat_timeout + self.sweep_interval

    def argv(self) -> list[str]:
        return [
            "--heartbeat-interval",
            str(self.heartbeat_interval),
            "--heartbeat-timeout",
            str(self.heartbeat_timeout),
            "--sweep-interval",
            str(self.sweep_interval),
            "--poll-interval",
            str(self.poll_interval),
        ]


def wait_for(
    what: str, check: Callable[[], T | None], *, timeout: float, interval: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sleep_until(moment: float) -> None:
    """Sleep until wall-clock ``moment`` (``time.time()`` seconds)."""
    time.sleep(max(0.0, moment - time.time()))


@dataclass
class Proc:
    """One scheduler process."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    instance_id: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.pid, sig)


@dataclass
class Cluster:
    """Scheduler processes on one database, with jobs witnessed in ``witness_url``."""

    url: str
    witness_url: str
    workdir: Path
    timings: Timings = field(default_factory=Timings)
    procs: list[Proc] = field(default_factory=list)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(self.procs, timeout=10)

    def spawn(self, *, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> Proc:
        name = f"p{len(self.procs)}"
        out = self.workdir / f"{name}.out"
        err = self.workdir / f"{name}.err"
        full_env = {
            **os.environ,
            "WITNESS_DATABASE_URL": self.witness_url,
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.procs.run_service",
                    self.url,
                    *self.timings.argv(),
                    *args,
                ],
                cwd=ROOT,
                env=full_env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
        proc = Proc(name, popen, out, err)
        self.procs.append(proc)
        return proc

    def wait_ready(self, procs: Iterable[Proc], timeout: float = 30.0) -> None:
        for proc in procs:

            def ready(proc: Proc = proc) -> str | None:
                if not proc.alive():
                    raise AssertionError(
                        f"{proc.name} (pid {proc.pid}) exited with {proc.popen.returncode}: "
                        f"{proc.stderr()[-3000:]}"
                    )
                for line in proc.stdout().splitlines():
                    if line.startswith("ready "):
                        return line.split(" ", 1)[1].strip()
                return None

            proc.instance_id = wait_for(f"{proc.name} to start", ready, timeout=timeout)

    def start(
        self,
        n: int,
        *,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        stagger: float = 0.0,
        wait: bool = True,
    ) -> list[Proc]:
        started = []
        for index in range(n):
            if index and stagger:
                time.sleep(stagger)
            started.append(self.spawn(env=env, args=args))
        if wait:
            self.wait_ready(started)
        return started

    def kill(self, proc: Proc) -> float:
        """SIGKILL ``proc``; returns the wall-clock time of the kill."""
        killed_at = time.time()
        proc.signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)
        return killed_at

    def stop(self, procs: Iterable[Proc] | None = None, *, timeout: float = 20.0) -> None:
        """SIGTERM (and SIGCONT, in case one is stopped), wait; SIGKILL what is left."""
        targets = [p for p in (self.procs if procs is None else procs) if p.alive()]
        for proc in targets:
            with contextlib.suppress(ProcessLookupError):
                proc.signal(signal.SIGCONT)
                proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in targets:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.signal(signal.SIGKILL)
                proc.popen.wait(timeout=10)

    def by_pid(self) -> dict[int, Proc]:
        return {proc.pid: proc for proc in self.procs}


# -- records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """One start, as the job recorded it."""

    job_key: str
    scheduled_for: datetime
    attempt: int
    pid: int
    execution_id: str | None
    started_at: float

    @property
    def slot(self) -> tuple[str, datetime]:
        return self.job_key, self.scheduled_for

    @property
    def late(self) -> float:
        return self.started_at - self.scheduled_for.timestamp()


@dataclass(frozen=True)
class Row:
    """One execution row, as taskmgr stored it."""

    id: str
    job_key: str
    scheduled_for: datetime
    attempt: int
    trigger: str
    status: str
    owner: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    #: the id of the run's first attempt, shared by its retries
    chain_id: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        # instance ids are "<host>:<pid>:<random>"
        return int(self.owner.split(":")[-2]) if self.owner else None


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.NullPool)


def read_witness(url: str) -> list[Start]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(witness_table).order_by(witness_table.c.id)).all()
    finally:
        engine.dispose()
    return [
        Start(
            job_key=row.job_key,
            scheduled_for=datetime.fromisoformat(row.scheduled_for).astimezone(UTC),
            attempt=row.attempt,
            pid=row.pid,
            execution_id=row.execution_id,
            started_at=row.started_at,
        )
        for row in rows
    ]


def read_executions(url: str) -> list[Row]:
    table = build_tables("taskmgr_", None).executions
    c = table.c
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    c.id,
                    c.job_key,
                    c.scheduled_for,
                    c.attempt,
                    c.trigger,
                    c.status,
                    c.owner,
                    c.created_at,
                    c.started_at,
                    c.completed_at,
                    c.error_message,
                    c.chain_id,
                    c.kwargs,
                ).order_by(c.job_key, c.scheduled_for, c.attempt)
            ).all()
    finally:
        engine.dispose()
    return [Row(**row._asdict()) for row in rows]


def read_job_starts(url: str) -> dict[str, datetime]:
    """Each job's persisted interval anchor (``trigger.start``)."""
    table = build_tables("taskmgr_", None).jobs
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.job_key, table.c.trigger)).all()
    finally:
        engine.dispose()
    return {
        key: datetime.fromisoformat(trigger["start"]).astimezone(UTC)
        for key, trigger in rows
        if trigger.get("start")
    }


# -- verdicts ------------------------------------------------------------------------


def duplicate_starts(
    starts: Iterable[Start], *, per_attempt: bool = True
) -> dict[tuple[Any, ...], int]:
    """Slots started more than once: ``{(job, slot[, attempt]): starts}``. Per attempt,
    a retry of a lost attempt is not a duplicate (at-least-once for jobs with
    retries); per slot it is."""
    counts = collections.Counter(
        (s.job_key, s.scheduled_for, s.attempt) if per_attempt else s.slot for s in starts
    )
    return {key: n for key, n in counts.items() if n > 1}


def extra_starts(duplicates: dict[tuple[Any, ...], int]) -> int:
    return sum(n - 1 for n in duplicates.values())


def expected_slots(
    keys: Iterable[str], anchor: datetime, until: datetime, every: float = 1.0
) -> set[tuple[str, datetime]]:
    step = timedelta(seconds=every)
    count = int((until - anchor) / step) + 1 if until >= anchor else 0
    return {(key, anchor + k * step) for key in keys for k in range(count)}


def first_own_slot(anchor: datetime, created_by: datetime, every: float = 1.0) -> datetime:
    """The first slot of an ``anchor`` grid a job created (or re-anchored) by
    ``created_by`` has: on a slow machine the anchor may already have passed, and the
    slots before its creation are not the job's."""
    behind = max(0.0, (created_by - anchor).total_seconds())
    return anchor + timedelta(seconds=every * math.ceil(behind / every))


def ran_grid(
    rows: Iterable[Row], keys: Iterable[str], first_due: datetime, every: float = 1.0
) -> tuple[set[tuple[str, datetime]], dict[str, datetime]]:
    """The slots each job must have started: its grid from its first row up to the
    newest slot it ran (how far that reaches depends on the machine's speed; a hole
    inside it is a lost slot), and the jobs whose first row comes after
    ``first_due`` (their first own slots have no row at all)."""
    rows = list(rows)
    expected: set[tuple[str, datetime]] = set()
    late: dict[str, datetime] = {}
    for key in keys:
        own = [r for r in rows if r.job_key == key]
        ran = [r.scheduled_for for r in own if r.status == "success"]
        if not own:
            late[key] = first_due
            continue
        first = min(r.scheduled_for for r in own)
        if first > first_due:
            late[key] = first
        if ran:
            expected |= expected_slots([key], first, max(ran), every)
    return expected, late


def missing_slots(
    starts: Iterable[Start], expected: set[tuple[str, datetime]]
) -> list[tuple[str, datetime]]:
    seen = {s.slot for s in starts}
    return sorted(expected - seen)


def lateness(starts: Iterable[Start]) -> tuple[float, float]:
    """(p99, max) of start - scheduled_for, in milliseconds."""
    values = sorted(s.late * 1000 for s in starts)
    if not values:
        return 0.0, 0.0
    return values[min(len(values) - 1, int(len(values) * 0.99))], values[-1]


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def next_second(after: float, lead: float = 1.0) -> datetime:
    """A whole second at least ``lead`` seconds after wall-clock ``after``."""
    return utc(after + lead).replace(microsecond=0) + timedelta(seconds=1)


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    began = time.monotonic()
    yield lambda: time.monotonic() - began


def create_interval_jobs(
    url: str,
    keys: Iterable[str],
    anchor: datetime,
    *,
    every: float = 1.0,
    slow: float | None = None,
    **options: Any,
) -> None:
    """Create interval jobs anchored at ``anchor`` running ``witness`` (or
    ``witness_slow(slow)``), through a short-lived service of the test process."""
    from taskmgr import Interval, SchedulerService
    from tests.jobs.witness import witness, witness_slow

    setup = SchedulerService(url, jobs=[witness, witness_slow])
    try:
        for key in keys:
            if slow is None:
                setup.create_job(key, witness, trigger=Interval(every, start=anchor), **options)
            else:
                setup.create_job(
                    key,
                    witness_slow,
                    trigger=Interval(every, start=anchor),
                    kwargs={"seconds": slow},
                    **options,
                )
    finally:
        setup.close()
