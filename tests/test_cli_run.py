"""``taskmgr run --app module:service``: a service as a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from taskmgr import ExecutionStatus, InstanceStatus, SchedulerService

HOST_APP = """
from taskmgr import SchedulerService, scheduled_job


@scheduled_job("host.heartbeat", interval=1)
def heartbeat():
    return "beat"


service = SchedulerService("sqlite:///{db}", jobs=[heartbeat], poll_interval=0.2)


def make_service():
    return service
"""


def _run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMGR_")}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "taskmgr", "run", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def host(tmp_path: Path) -> Path:
    db = tmp_path / "host.db"
    (tmp_path / "hostapp.py").write_text(textwrap.dedent(HOST_APP.format(db=db)))
    return db


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["hostapp:service", "hostapp:make_service"])
def test_run_fires_jobs_until_sigterm_then_stops_cleanly(
    tmp_path: Path, host: Path, spec: str
) -> None:
    proc = _run(tmp_path, "--app", spec)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "running 1 registered function(s)" in first, proc.stderr.read()
        observer = SchedulerService(f"sqlite:///{host}")
        deadline = time.monotonic() + 30
        while not observer.list_executions(status="success").items:
            assert time.monotonic() < deadline, "no execution succeeded within 30 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping (SIGTERM)" in out and out.rstrip().endswith("stopped")
    [instance] = observer.list_instances()
    assert instance.status is InstanceStatus.STOPPED and instance.mode == "standalone"
    statuses = {e.status for e in observer.list_executions(limit=500).items}
    assert statuses <= {ExecutionStatus.SUCCESS, ExecutionStatus.MISSED}  # none left running
    observer.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hostapp", "must look like 'package.module:service'"),
        ("nosuchmodule:service", "module 'nosuchmodule' not found"),
        ("hostapp:nothing", "has no attribute 'nothing'"),
        ("hostapp:HOST", "not a SchedulerService"),
    ],
)
def test_run_explains_a_bad_app_in_one_line(
    tmp_path: Path, host: Path, spec: str, message: str
) -> None:
    (tmp_path / "hostapp.py").write_text(
        (tmp_path / "hostapp.py").read_text() + "\nHOST = 'not a service'\n"
    )
    proc = _run(tmp_path, "--app", spec)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_run_needs_an_app(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "--app" in err
