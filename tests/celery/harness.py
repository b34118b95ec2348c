"""Real ``celery worker`` processes for the tests, started and stopped by pid.

Each worker runs in a session of its own, so its pool processes can be found (and,
in ``finally``, killed) through its process group even when the test SIGKILLed the
main process. Readiness is read from the database: the worker's ``instances`` row.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from taskmgr import SchedulerService
from taskmgr.core.models import Execution, InstanceStatus

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    every: float = 0.1,
    *,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds,
    with ``detail()`` (e.g. a worker's log) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(message if detail is None else f"{message}:\n{detail()}")
        time.sleep(every)


def redis_db_url(base: str) -> str:
    """``base`` on a database number of this test run's own (1-15)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{1 + os.getpid() % 15}"))


def all_executions(service: SchedulerService) -> list[Execution]:
    found: list[Execution] = []
    page = service.list_executions(limit=500)
    while True:
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        page = service.list_executions(limit=500, cursor=page.next_cursor)


def wait_for_ended(
    service: SchedulerService, count: int, timeout: float, what: str, every: float = 0.1
) -> list[Execution]:
    """Wait until the service's history holds ``count`` executions, all ended."""
    return wait_for(
        lambda: (
            len(done := all_executions(service)) == count
            and all(e.status.is_final for e in done)
            and done
        ),
        timeout,
        what,
        every=every,
    )


@dataclass
class Setup:
    """One test's broker, queue and databases, and the environment workers get."""

    broker: str
    database: str
    witness: str
    queue: str = field(default_factory=lambda: f"tm-{uuid.uuid4().hex[:10]}")
    logs: Path = Path()
    accept_pickle: bool = False
    #: More environment for the workers (read by the host module, ``hostapp``).
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TASKMGR_CELERY_TEST_BROKER": self.broker,
            "TASKMGR_CELERY_TEST_DATABASE": self.database,
            "TASKMGR_CELERY_TEST_QUEUE": self.queue,
            "CELERY_WITNESS_URL": self.witness,
        }
        if self.accept_pickle:
            env["TASKMGR_CELERY_TEST_PICKLE"] = "1"
            env["C_FORCE_ROOT"] = "1"  # Celery refuses pickle as root otherwise (CI is root)
        env.update(self.extra_env)
        return env


class Worker:
    """``celery -A tests.celery.hostapp:app worker`` in a process group of its own."""

    def __init__(
        self,
        setup: Setup,
        *,
        pool: str = "solo",
        concurrency: int = 1,
        args: Sequence[str] = (),
    ) -> None:
        self.setup = setup
        self.log = setup.logs / f"worker-{uuid.uuid4().hex[:6]}.log"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery.hostapp:app",
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--queues",
            setup.queue,
            "--hostname",
            f"{self.log.stem}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            *args,
        ]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=setup.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def wait_ready(self, service: SchedulerService, timeout: float = 30.0) -> str:
        """The worker's instance id, once it registered (its consumer starts right after)."""

        def registered() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.output()}")
            for instance in service.list_instances():
                if (
                    instance.mode == "worker"
                    and instance.pid == self.pid
                    and instance.status is InstanceStatus.RUNNING
                ):
                    return instance.id
            return None

        instance_id = wait_for(registered, timeout, "the worker to register")
        wait_for(lambda: "ready." in self.output(), timeout, "the worker's consumer")
        return instance_id

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (a lost machine)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, grace: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left of the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@contextlib.contextmanager
def workers() -> Iterator[list[Worker]]:
    """Collects the workers a test starts and always stops them."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


@dataclass(frozen=True)
class OneShotRun:
    """What :func:`run_one_shots` saw: the executions once all ended, the worker's
    instance id, and the starts the jobs wrote themselves (the witness rows)."""

    executions: list[Execution]
    worker_id: str
    starts: list[Any]


def run_one_shots(setup: Setup, count: int, *, pool: str, concurrency: int) -> OneShotRun:
    """``count`` one-shot jobs due in a second (half sync, half ``async def``), run by one
    real worker of ``pool`` through the setup's broker."""
    from tests.celery import jobs
    from tests.celery.hostapp import build

    _, service = build(setup.broker, setup.database, setup.queue)
    at = datetime.now(UTC) + timedelta(seconds=1)
    for i in range(count):
        func = jobs.witness if i % 2 else jobs.witness_async
        service.create_job(f"job-{i:03d}", func, at=at, misfire_grace_time=3600)
    with workers() as started:
        worker = Worker(setup, pool=pool, concurrency=concurrency)
        started.append(worker)
        worker_id = worker.wait_ready(service)
        service.start()
        try:
            wait_for_ended(service, count, 60, "every execution to end", every=0.25)
        finally:
            service.shutdown()
        executions = all_executions(service)
        service.close()
    return OneShotRun(executions, worker_id, jobs.read_witness(setup.witness))
