"""The broker goes away while the scheduler publishes: a private Redis without
persistence is killed and started again on the same port. Executions claimed while it
was down wait as ``pending`` and are published when it is back; messages that died
with it are published again; every slot runs once."""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

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


def test_messages_lost_in_a_broker_restart_are_published_again_once_it_is_back(
    private_redis: PrivateRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten jobs of one run at a time each, their messages waiting in Redis when it
    restarts empty: the scheduler sees the broker back and publishes them again at
    once (``receive_timeout`` and ``dispatch_timeout`` are far beyond this test), so
    every job runs again within seconds, each execution once."""
    caplog.set_level(logging.INFO, "taskmgr.dispatch")
    setup = Setup(
        broker=private_redis.url,
        database=f"sqlite:///{tmp_path / 'taskmgr.db'}",
        witness=f"sqlite:///{tmp_path / 'witness.db'}",
        logs=tmp_path,
    )
    jobs.create_witness_table(setup.witness)
    _, service = build(
        setup.broker, setup.database, setup.queue, receive_timeout=60.0, dispatch_timeout=300.0
    )
    keys = [f"tick-{i}" for i in range(10)]
    for key in keys:
        # one run at a time: while its message is lost, every later slot is skipped
        service.create_job(key, jobs.witness, trigger=Interval(1), max_instances=1)
    broker = redis.Redis(port=private_redis.port)
    with workers() as started, service:
        wait_for(lambda: broker.llen(setup.queue) == len(keys), 15, "a message per job")
        stranded = {e.id for e in all_executions(service) if e.status is ExecutionStatus.RUNNING}
        assert len(stranded) == len(keys)
        private_redis.kill()  # the messages die with it
        wait_for(
            lambda: any("cannot reach the Celery broker" in r.getMessage() for r in caplog.records),
            10,
            "the scheduler to find the broker gone",
        )
        private_redis.start()  # empty
        started.append(worker := Worker(setup))
        worker.wait_ready(service)

        def ran_again() -> bool:
            done = {e.id for e in all_executions(service) if e.status is ExecutionStatus.SUCCESS}
            return stranded <= done

        wait_for(ran_again, 20, "the stranded executions to run", every=0.2)
        for key in keys:
            service.pause_job(key)
        wait_for(
            lambda: all(e.status.is_final for e in all_executions(service)),
            20,
            "every execution to end",
            every=0.2,
        )
    broker.close()
    executions = all_executions(service)
    service.close()
    assert {e.status for e in executions} <= {ExecutionStatus.SUCCESS, ExecutionStatus.SKIPPED}
    ran = {e.id for e in executions if e.status is ExecutionStatus.SUCCESS}
    starts = collections.Counter(row.execution_id for row in jobs.read_witness(setup.witness))
    assert starts == dict.fromkeys(ran, 1), "an execution did not run, or ran twice"
