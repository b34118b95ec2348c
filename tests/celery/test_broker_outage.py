"""The broker goes away while the scheduler publishes: a private Redis without
persistence is killed and started again on the same port. Executions claimed while it
was down wait as ``pending`` and are published when it is back; messages that died
with it are published again; every slot runs once."""

from __future__ import annotations

import collections
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskmgr import Interval
from taskmgr.core.models import ExecutionStatus
from tests.celery import jobs
from tests.celery.harness import Setup, Worker, all_executions, wait_for, workers
from tests.celery.hostapp import build
from tests.services import unavailable

pytestmark = pytest.mark.slow

JOBS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A throwaway redis-server on loopback, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return True
            return False

        wait_for(answers, 10, "redis-server to listen")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis", "redis-server is not installed, and this test runs its own")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_broker_restart_loses_nothing_and_duplicates_nothing(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    setup = Setup(
        broker=private_redis.url,
        database=f"sqlite:///{tmp_path / 'taskmgr.db'}",
        witness=f"sqlite:///{tmp_path / 'witness.db'}",
        logs=tmp_path,
    )
    jobs.create_witness_table(setup.witness)
    _, service = build(setup.broker, setup.database, setup.queue)
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    for i in range(JOBS):
        # every slot must run: executions waiting for the broker count against
        # max_instances, and coalescing would merge the slots of the outage (both
        # recorded as skipped/missed, by the job's own policy, not lost)
        service.create_job(
            f"tick-{i}",
            jobs.witness,
            trigger=Interval(1, start=anchor),
            misfire_grace_time=3600,
            coalesce=False,
            max_instances=50,
        )
    with workers() as started:
        started.append(worker := Worker(setup))
        worker.wait_ready(service)
        with service:
            wait_for(lambda: len(jobs.read_witness(setup.witness)) >= 2 * JOBS, 20, "two rounds")
            private_redis.kill()  # messages in it are gone: no persistence
            time.sleep(3.0)  # the scheduler keeps claiming slots meanwhile
            private_redis.start()
            time.sleep(2.0)
            for i in range(JOBS):
                service.pause_job(f"tick-{i}")
            wait_for(
                lambda: all(e.status.is_final for e in all_executions(service)),
                40,
                "every execution to end",
                every=0.25,
            )
        executions = all_executions(service)
        service.close()

    assert collections.Counter(e.status for e in executions) == {
        ExecutionStatus.SUCCESS: len(executions)
    }
    per_job = collections.defaultdict(list)
    for execution in executions:
        per_job[execution.job_key].append(execution.scheduled_for)
    for key, slots in per_job.items():
        slots.sort()
        # no slot skipped: consecutive seconds from the anchor, through the outage
        assert slots == [anchor + timedelta(seconds=k) for k in range(len(slots))], key
        assert len(slots) >= 7
    starts = collections.Counter(
        (row.job_key, row.scheduled_for) for row in jobs.read_witness(setup.witness)
    )
    assert set(starts.values()) == {1}, "a slot started more than once"
    assert set(starts) == {(e.job_key, e.scheduled_for.isoformat()) for e in executions}
