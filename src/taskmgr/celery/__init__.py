"""Run executions on Celery workers (extra ``taskmgr[celery]``).

The scheduler claims each slot in the database as usual, then
:class:`CeleryDispatcher` publishes one JSON message per execution to a task that
taskmgr registers on **the host's** Celery app. ``celery -A host_module worker`` (or
``taskmgr worker --app host_module:service``) runs it: the worker takes the execution
over in the database, runs the registered function and records the outcome with the
same fenced writes as inline execution. :func:`celery_job` schedules (or defers) a
Celery task the host already has, its body run the same way. See ``docs/celery.md``.
"""

from __future__ import annotations

try:
    import celery as _celery  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "taskmgr.celery needs Celery: pip install 'taskmgr[celery]'", name=exc.name
    ) from exc

from taskmgr.celery.bridge import CeleryJob, CeleryTaskConflictError, celery_job
from taskmgr.celery.dispatcher import INLINE_QUEUE, CeleryDispatcher
from taskmgr.celery.states import ExecutionFailedError
from taskmgr.celery.worker import TASK_NAME, install

__all__ = [
    "INLINE_QUEUE",
    "TASK_NAME",
    "CeleryDispatcher",
    "CeleryJob",
    "CeleryTaskConflictError",
    "ExecutionFailedError",
    "celery_job",
    "install",
]
