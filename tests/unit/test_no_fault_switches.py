"""The installed package reads no fault switch: fault injection lives in
``tests/faults.py`` and plugs in through the ``Storage`` port."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import taskmgr

PACKAGE = Path(taskmgr.__file__).parent


def test_no_module_of_the_package_names_a_fault_switch() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "TASKMGR_FAULT" in (text := path.read_text())
        or "checkpoint(" in text
        or "faults import" in text
    ]
    assert offenders == []


def test_the_old_switches_in_the_environment_change_nothing(tmp_path: Path) -> None:
    # A fresh interpreter, so a switch read at import time would be caught.
    script = textwrap.dedent(
        """
        from taskmgr import ExecutionStatus, SchedulerService
        from taskmgr.storage import MemoryStorage
        from taskmgr.testing import FakeClock

        def job():
            return "ran"

        clock = FakeClock("2026-01-05T09:00:00+00:00")
        service = SchedulerService(MemoryStorage(), jobs=[job], clock=clock, background=False)
        with service:
            service.create_job("once", job, interval=60)
            clock.advance(60)
            [run] = service.run_due(timeout=10)
            assert run.status is ExecutionStatus.SUCCESS, run
            clock.advance(1)
            assert service.run_due(timeout=10) == []
            [row] = service.list_executions(job_key="once").items
            assert row.id == run.id
        print("ok")
        """
    )
    env = {
        **os.environ,
        "TASKMGR_FAULT_UNCOORDINATED": "1",
        "TASKMGR_FAULT_PAUSE_AT": "after_execute",
        "TASKMGR_FAULT_MARKER": str(tmp_path / "marker"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert not (tmp_path / "marker").exists()
