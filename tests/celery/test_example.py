"""``examples/celery`` works as its README says: ``taskmgr worker --app app:service``
and ``taskmgr run --app app:service`` in that directory, a local Redis, SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from taskmgr import SchedulerService
from taskmgr.core.models import ExecutionStatus
from tests.celery.harness import ROOT, redis_db_url, wait_for
from tests.services import require_redis

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "celery"


def test_the_celery_example_runs_jobs_on_a_worker_and_inline(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'example.db'}"
    queue = f"tm-example-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if k != "TASKMGR_APP"},
        "CELERY_BROKER_URL": redis_db_url(require_redis()),
        "CELERY_QUEUE": queue,
        "TASKMGR_DATABASE_URL": database,
    }
    commands = {
        "worker": [
            "worker",
            "--app",
            "app:service",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        "run": ["run", "--app", "app:service"],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    check = SchedulerService(database)
    try:
        for name, args in commands.items():
            with logs[name].open("w") as out:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "taskmgr", *args],
                    cwd=EXAMPLE,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def done() -> dict[str, str] | None:
            for proc in procs.values():
                assert proc.poll() is None, "\n".join(p.read_text() for p in logs.values())
            with contextlib.suppress(Exception):
                owners = {
                    e.job_key: e.owner or ""
                    for e in check.list_executions(status=ExecutionStatus.SUCCESS).items
                }
                if len(owners) == 3:
                    return owners
            return None

        owners = wait_for(done, 40, "a success of each example job", every=0.3)
        instances = {i.id: i for i in check.list_instances()}
        assert instances[owners["example.report"]].mode == "worker"
        assert instances[owners["example.fetch"]].mode == "worker"
        assert instances[owners["example.local_cleanup"]].mode == "standalone"
    finally:
        check.close()
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    assert procs["run"].returncode == 0, logs["run"].read_text()
