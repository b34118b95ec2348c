"""The public namespace is curated, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys
import types

import taskmgr
import taskmgr.core.decorators
from taskmgr import SchedulerService
from taskmgr.testing import FakeClock, make_test_service


def test_all_lists_exactly_the_public_names() -> None:
    public = sorted(
        (name for name in vars(taskmgr) if not name.startswith("_")),
        key=str.casefold,
    )
    public = [
        name
        for name in public
        if not isinstance(getattr(taskmgr, name), types.ModuleType) and name != "logging"
    ]
    assert len(taskmgr.__all__) == len(set(taskmgr.__all__))
    assert sorted(taskmgr.__all__, key=str.casefold) == public


def test_import_pulls_in_no_optional_framework() -> None:
    code = (
        "import sys, taskmgr; "
        "bad = [m for m in ('celery', 'fastapi', 'kombu', 'redis', 'prometheus_client') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_constructor_does_no_io(tmp_path: object) -> None:
    service = SchedulerService("sqlite:////nonexistent/dir/never-created.db")
    assert not service.running  # nothing was opened, nothing failed


job_module = types.ModuleType("job_module")
exec(  # a module declaring jobs, as a host's jobs.py would
    "from taskmgr import scheduled_job\n"
    "@scheduled_job(interval=60)\n"
    "def one():\n    return 1\n"
    "@scheduled_job(cron='0 * * * *')\n"
    "def two():\n    return 2\n"
    "def helper():\n    return 3\n",
    job_module.__dict__,
)


def test_register_a_module_registers_its_declared_jobs() -> None:
    with make_test_service(clock=FakeClock()) as service:
        names = service.register(job_module)
        assert names == ["job_module.one", "job_module.two"]
        assert [job.key for job in service.list_jobs()] == ["job_module.one", "job_module.two"]


def test_decorator_registers_nothing_globally() -> None:
    assert taskmgr.core.decorators.get_definition(job_module.one) is not None
    with make_test_service(clock=FakeClock()) as service:
        assert service.list_jobs() == []
