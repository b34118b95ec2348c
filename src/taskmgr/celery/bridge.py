"""Celery tasks the host already has, scheduled and deferred as taskmgr jobs.

``celery_job(send_report, key="reports.nightly", cron="0 2 * * *")`` declares a job
whose body is the task's own (its ``run``): taskmgr claims each slot, takes it over
on a worker like any job's, and calls the task's body there, in the execution, with
the run's keyword arguments; history, retries and timeouts are taskmgr's. Without a
schedule it is a task, deferred with ``service.defer("reports.nightly", ...)``.

The task is never sent as a Celery message of its own: the message is taskmgr's, so
the task's own options that act on its messages are either taken over by the job
(``max_retries``, ``soft_time_limit``/``time_limit``, its route) or refused where
taskmgr cannot honour them (``autoretry_for``, ``rate_limit``): see
``docs/celery.md``, "Existing Celery tasks".
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from celery.app.task import Task

from taskmgr.core.context import current_execution
from taskmgr.core.decorators import get_definition
from taskmgr.core.definition import (
    build_definition,
    build_trigger,
    check_concurrency_key,
    check_kwargs_signature,
)
from taskmgr.core.models import (
    DEFAULT_MISFIRE_GRACE_TIME,
    JobDefinition,
    OverlapPolicy,
    RetryBackoff,
)
from taskmgr.core.targets import JobTarget
from taskmgr.core.triggers import Manual, TriggerSpec
from taskmgr.exceptions import InvalidFunctionError, InvalidInputError, InvalidPolicyError

__all__ = ["CeleryJob", "CeleryTaskConflictError", "celery_job"]

#: The prefix of a Celery task's registered name in taskmgr's registry.
PREFIX = "celery:"


class CeleryTaskConflictError(InvalidInputError):
    """A Celery task scheduled as a job has an option of its own that taskmgr cannot
    honour or that contradicts the job's (its retries, time limits or rate limit):
    refused when the job is declared. ``field`` names the task's option."""


class CeleryJob(JobTarget):
    """The body of one Celery task, as a job's body (made by :func:`celery_job`).

    Calling it runs the task's ``run`` in this process with keyword arguments, with a
    request of its own pushed on the task (``self.request`` of a ``bind=True`` task:
    ``id`` is the execution's id, ``retries`` its attempt minus one, ``kwargs`` the
    arguments). A task whose class defines its own ``__call__`` (an application
    context around each run) is called through it instead.
    """

    def __init__(self, task: Any, definition: JobDefinition) -> None:
        self.task = task
        self.name: str = task.name
        self.__taskmgr_job__ = definition

    @property
    def registered_name(self) -> str:
        return PREFIX + self.name

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.task.run)

    def same_body(self, other: object) -> bool:
        return isinstance(other, CeleryJob) and other.task is self.task

    def __call__(self, **kwargs: Any) -> Any:
        task = self.task
        if _own_call(task):
            return task(**kwargs)
        context = current_execution()
        task.push_request(
            id=context.execution_id if context is not None else None,
            args=(),
            kwargs=kwargs,
            retries=context.attempt - 1 if context is not None else 0,
        )
        try:
            return task.run(**kwargs)
        finally:
            task.pop_request()

    def __repr__(self) -> str:
        definition = get_definition(self)
        key = definition.key if definition is not None else None
        return f"<CeleryJob {self.name!r} key={key!r}>"


def celery_job(
    task: Any,
    key: str | None = None,
    *,
    app: Any = None,
    cron: str | None = None,
    interval: timedelta | float | None = None,
    at: datetime | None = None,
    trigger: TriggerSpec | Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    names: Mapping[str, str] | None = None,
    description: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    max_instances: int | None = None,
    overlap_policy: OverlapPolicy | str | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    misfire_grace_time: float | None = DEFAULT_MISFIRE_GRACE_TIME,
    coalesce: bool = True,
    max_retries: int | None = None,
    retry_backoff: RetryBackoff | tuple[float, ...] | Mapping[str, float] | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    retention: timedelta | float | None = None,
    dispatch: str | None = None,
    alert_late_after: timedelta | float | None = None,
    alert_failures: int | None = None,
    alert_max_runtime: timedelta | float | None = None,
    alert_no_success_within: timedelta | float | None = None,
    exclude_dates: Iterable[date | str] | None = None,
    enabled: bool = True,
) -> CeleryJob:
    """Declare a job whose body is an existing Celery task: the task object, or its
    registered name on ``app``. Hand the result to the service like a decorated
    function (``SchedulerService(jobs=[...])``, or a module holding it)::

        nightly = celery_job(send_report, key="reports.nightly", cron="0 2 * * *",
                             kwargs={"kind": "daily"}, max_retries=2)
        welcome = celery_job("emails.welcome", app=celery_app, key="emails.welcome")
        service.defer("emails.welcome", user_id=7)

    With a schedule (``cron=``, ``interval=``, ``at=``, ``trigger=``) the options are
    those of ``@scheduled_job`` (``exclude_dates`` too); without one it is a task, with
    the options of ``@task`` (``concurrency``, ``concurrency_key``). The ``alert_*``
    thresholds apply to both, as on the decorators. ``key`` defaults to the task's
    name. Runs go to the service's default dispatcher unless ``dispatch`` names
    another (``dispatch="celery"`` when the default is inline). Arguments are keyword
    arguments, JSON, checked against the task's signature.

    The task's own options: ``max_retries``, ``soft_time_limit`` (else
    ``time_limit``) and the queue the app routes it to (``task_routes``) become the
    job's ``max_retries``, ``timeout`` and ``queue`` when the job gives none; a job
    giving another ``max_retries`` or ``timeout`` is refused, as are tasks with
    ``autoretry_for``, ``rate_limit`` or ``max_retries=None`` (see ``docs/celery.md``).

    :raises CeleryTaskConflictError: an option of the task conflicts with taskmgr's.
    :raises InvalidFunctionError: not a Celery task, or no task of that name on ``app``.
    :raises InvalidInputError: any invalid option (as the decorators raise them).
    """
    found = _task(task, app)
    max_retries, timeout, queue = _taken_over(found, max_retries, timeout, queue)
    spec = build_trigger(cron=cron, interval=interval, at=at, trigger=trigger, timezone=timezone)
    options: dict[str, Any] = {
        "names": names,
        "description": description,
        "kwargs": kwargs,
        "coalesce": coalesce,
        "max_retries": 0 if max_retries is None else max_retries,
        "retry_backoff": retry_backoff,
        "timeout": timeout,
        "queue": queue,
        "retention": retention,
        "dispatch": dispatch,
        "alert_late_after": alert_late_after,
        "alert_failures": alert_failures,
        "alert_max_runtime": alert_max_runtime,
        "alert_no_success_within": alert_no_success_within,
        "enabled": enabled,
    }
    if exclude_dates is not None:  # a task has no slots to exclude: refused as @task would
        options["exclude_dates"] = exclude_dates
    if isinstance(spec, Manual):  # a task, as @task() declares one
        if max_instances is not None or overlap_policy is not None:
            raise InvalidPolicyError(
                "a task (no schedule) bounds its runs with concurrency=, not max_instances= "
                "or overlap_policy=",
                field="concurrency",
            )
        options.update(
            max_instances=1 if concurrency is None else concurrency,
            overlap_policy=OverlapPolicy.ALLOW if concurrency is None else OverlapPolicy.QUEUE,
            concurrency_key=concurrency_key,
            misfire_grace_time=None,
        )
    else:
        if concurrency is not None or concurrency_key is not None:
            raise InvalidPolicyError(
                "concurrency= and concurrency_key= are for tasks (no schedule); a scheduled "
                "job has max_instances= and overlap_policy=",
                field="concurrency",
            )
        options.update(
            max_instances=1 if max_instances is None else max_instances,
            overlap_policy=OverlapPolicy.SKIP if overlap_policy is None else overlap_policy,
            misfire_grace_time=misfire_grace_time,
        )
    definition = build_definition(
        key=key if key is not None else found.name,
        func=PREFIX + found.name,
        trigger=spec,
        options=options,
    )
    body = CeleryJob(found, definition)
    check_kwargs_signature(body, definition.kwargs, partial=isinstance(spec, Manual))
    check_concurrency_key(body, definition.concurrency_key)
    return body


def _task(task: Any, app: Any) -> Any:
    """The Celery task object: ``task`` itself (a lazy proxy evaluated), or the task
    registered as ``task`` on ``app``."""
    if isinstance(task, str):
        if app is None:
            raise InvalidFunctionError(
                f"to find the Celery task {task!r} by its name, pass its app: "
                f"celery_job({task!r}, app=celery_app, ...)"
            )
        try:
            found = app.tasks[task]
        except KeyError:
            raise InvalidFunctionError(
                f"no Celery task named {task!r} is registered on the app {app.main!r}; "
                "import the module that defines it before declaring the job, or pass "
                "the task object"
            ) from None
    else:
        found = task
    current = getattr(found, "_get_current_object", None)  # @app.task's lazy proxy
    if callable(current):
        found = current()
    if not isinstance(found, Task):
        raise InvalidFunctionError(
            f"celery_job() takes a Celery task (or its name and app=), got {type(found).__name__}"
        )
    return found


def _taken_over(
    task: Any, max_retries: int | None, timeout: float | None, queue: str | None
) -> tuple[int | None, float | None, str | None]:
    """The job's ``max_retries``, ``timeout`` and ``queue``, given the task's own.

    :raises CeleryTaskConflictError: the task retries itself, has a rate limit, or
        says other retries or time limits than the job does.
    """
    name = task.name
    if getattr(task, "autoretry_for", None):
        raise CeleryTaskConflictError(
            f"Celery task {name!r} retries itself (autoretry_for): taskmgr retries a "
            "job's failed attempts, persisted, after the job's backoff. Remove autoretry_for "
            "(and its retry_* options) from the task and give the job max_retries=N and "
            "retry_backoff=",
            field="autoretry_for",
        )
    if getattr(task, "rate_limit", None) is not None:
        raise CeleryTaskConflictError(
            f"Celery task {name!r} has rate_limit={task.rate_limit!r}: Celery applies it to "
            "the task's own messages, and a job's runs are taskmgr's messages, so it would "
            "not hold. Bound the job's runs with max_instances= (or concurrency= for a "
            "task) instead",
            field="rate_limit",
        )
    if _explicit(task, "max_retries"):
        own = task.max_retries
        if own is None:
            raise CeleryTaskConflictError(
                f"Celery task {name!r} retries for ever (max_retries=None): a job's retries "
                "are bounded; give the task a number, or leave max_retries to the job",
                field="max_retries",
            )
        if max_retries is None:
            max_retries = own
        elif max_retries != own:
            raise CeleryTaskConflictError(
                f"Celery task {name!r} says max_retries={own}, the job {max_retries}: "
                "give one of them (the task's is the job's when the job gives none)",
                field="max_retries",
            )
    soft, hard = getattr(task, "soft_time_limit", None), getattr(task, "time_limit", None)
    limit = soft if soft is not None else hard
    if limit is not None:
        if timeout is None:
            timeout = float(limit)
        elif float(timeout) != float(limit):
            which = "soft_time_limit" if soft is not None else "time_limit"
            raise CeleryTaskConflictError(
                f"Celery task {name!r} says {which}={limit}, the job timeout={timeout}: "
                "give one of them (the task's is the job's timeout when the job gives none)",
                field=which,
            )
    if queue is None:
        queue = _routed_queue(task)
    return max_retries, timeout, queue


def _routed_queue(task: Any) -> str | None:
    """The queue the app's routing (``task_routes``) sends the task's messages to, when
    it is not the app's default queue: the job's messages go there too."""
    try:
        route = task.app.amqp.router.route({}, task.name)
    except Exception:  # a routing function that needs the task's arguments
        return None
    found = route.get("queue")
    name = found if isinstance(found, str) else getattr(found, "name", None)
    if not isinstance(name, str) or name == task.app.conf.task_default_queue:
        return None
    return name


def _explicit(task: Any, option: str) -> bool:
    """Whether the task (its class, or a base class of the host's) sets ``option``
    rather than keeping Celery's default."""
    if option in vars(task):
        return True
    for cls in type(task).__mro__:
        if cls is Task:
            return False
        if option in vars(cls):
            return True
    return False


def _own_call(task: Any) -> bool:
    """Whether the task's class (or a base of the host's) defines ``__call__``: Celery's
    worker then calls the task through it, and so does taskmgr."""
    for cls in type(task).__mro__:
        if cls is Task:
            return False
        if "__call__" in vars(cls):
            return True
    return False
