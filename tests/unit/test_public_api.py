"""The public namespace is curated, and importing it stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

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


#: The public import paths and what each exports. Everything else (taskmgr.core,
#: taskmgr.storage, taskmgr.execution, ...) is internal: see docs/api.md. A change here
#: is a change of the public API, for the changelog.
PUBLIC_PATHS = {
    "taskmgr": [
        "AlertRule",
        "AlertSettings",
        "AsyncSchedulerService",
        "AuditAction",
        "AuditEntry",
        "AuditPage",
        "AuditSource",
        "BackfillResult",
        "BackfillTooLargeError",
        "ConflictError",
        "Cron",
        "DataRejectedError",
        "DatabaseURLError",
        "Date",
        "Dispatcher",
        "EventKind",
        "Execution",
        "ExecutionContext",
        "ExecutionEvent",
        "ExecutionLogFilter",
        "ExecutionNotFoundError",
        "ExecutionPage",
        "ExecutionStatus",
        "ExecutionTrigger",
        "FailureGroup",
        "FunctionAlreadyRegisteredError",
        "FunctionNotRegisteredError",
        "Health",
        "Incident",
        "IncidentEvent",
        "IncidentEventKind",
        "InlineDispatcher",
        "Instance",
        "InstanceStatus",
        "Interval",
        "InvalidAlertError",
        "InvalidBackfillError",
        "InvalidCronError",
        "InvalidDatetimeError",
        "InvalidFunctionError",
        "InvalidInputError",
        "InvalidIntervalError",
        "InvalidJobKeyError",
        "InvalidKwargsError",
        "InvalidPolicyError",
        "InvalidTimezoneError",
        "InvalidTriggerError",
        "InvalidWebhookError",
        "InvalidWindowError",
        "Job",
        "JobBusyError",
        "JobDefinition",
        "JobExistsError",
        "JobNotFoundError",
        "JobOrphanedError",
        "JobPausedError",
        "JobQueue",
        "JobRegistry",
        "JobSource",
        "JobState",
        "MaintenanceWindow",
        "Manual",
        "NotFoundError",
        "NotifyState",
        "OverlapPolicy",
        "Pause",
        "PauseScope",
        "PauseUntilPastError",
        "RetryBackoff",
        "SchedulerService",
        "SchemaAheadError",
        "SchemaBehindError",
        "SchemaError",
        "ServiceStateError",
        "StorageError",
        "TaskmgrError",
        "TaskmgrSettings",
        "TransactionTimedOutError",
        "UnknownDispatcherError",
        "VersionConflictError",
        "WindowAction",
        "WindowExistsError",
        "WindowInPastError",
        "WindowJobNotFoundError",
        "WindowNotFoundError",
        "WindowOverlapError",
        "current_execution",
        "scheduled_job",
        "task",
        "verify_webhook_signature",
    ],
    "taskmgr.fastapi": [
        "BackgroundServer",
        "Problem",
        "ProblemRoute",
        "RateLimit",
        "ServiceLifespan",
        "create_app",
        "create_router",
        "lifespan",
        "problem_response",
        "serve",
    ],
    "taskmgr.celery": [
        "CeleryDispatcher",
        "CeleryJob",
        "CeleryTaskConflictError",
        "ExecutionFailedError",
        "INLINE_QUEUE",
        "TASK_NAME",
        "celery_job",
        "install",
    ],
    "taskmgr.testing": ["FakeClock", "make_test_service"],
    "taskmgr.pytest_plugin": [
        "taskmgr_async_service",
        "taskmgr_clock",
        "taskmgr_jobs",
        "taskmgr_service",
        "taskmgr_sqlite_service",
    ],
    "taskmgr.alembic": [
        "IncludeName",
        "IncludeObject",
        "include_name",
        "include_object",
        "metadata",
        "table_names",
        "without_taskmgr",
    ],
    "taskmgr.prometheus": ["DEFAULT_BUCKETS", "TaskmgrCollector"],
}


@pytest.mark.parametrize("path", sorted(PUBLIC_PATHS))
def test_public_path_exports_what_it_exports_today(path: str) -> None:
    module = importlib.import_module(path)

    assert sorted(module.__all__) == PUBLIC_PATHS[path]
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{path}.{name} does not resolve"


def test_the_root_exports_its_version() -> None:
    assert taskmgr.__version__ == importlib.import_module("taskmgr.version").__version__


def test_import_pulls_in_no_optional_framework() -> None:
    frameworks = ("celery", "kombu", "fastapi", "starlette", "prometheus_client", "redis")
    code = (
        "import sys, taskmgr; "
        f"print([m for m in sys.modules if m.partition('.')[0] in {frameworks!r}])"
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
