"""``@scheduled_job``: validate a job declaration and attach it to the function.

The decorator only annotates: it registers nothing globally and starts nothing. The
host hands decorated functions (or their modules) to a ``SchedulerService``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from taskmgr.core.definition import (
    build_definition,
    build_trigger,
    check_concurrency_key,
    check_function,
    check_kwargs_signature,
    function_name,
)
from taskmgr.core.models import (
    DEFAULT_MISFIRE_GRACE_TIME,
    MAX_INSTANCES,
    JobDefinition,
    OverlapPolicy,
    RetryBackoff,
)
from taskmgr.core.triggers import Manual, TriggerSpec
from taskmgr.exceptions import InvalidFunctionError, InvalidPolicyError, InvalidTriggerError

__all__ = ["get_definition", "scheduled_job", "task"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__taskmgr_job__"


def scheduled_job(
    key: str | None = None,
    *,
    cron: str | None = None,
    interval: timedelta | float | None = None,
    at: datetime | None = None,
    trigger: TriggerSpec | Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    names: Mapping[str, str] | None = None,
    description: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    max_instances: int = 1,
    overlap_policy: OverlapPolicy | str = OverlapPolicy.SKIP,
    misfire_grace_time: float | None = DEFAULT_MISFIRE_GRACE_TIME,
    coalesce: bool = True,
    max_retries: int = 0,
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
) -> Callable[[F], F]:
    """Declare a function as a scheduled job.

    Exactly one of ``cron=`` (5-field crontab, read in ``timezone``), ``interval=``
    (seconds or a timedelta), ``at=`` (one aware datetime) or ``trigger=`` (a spec).
    ``key`` defaults to the function's module-qualified name. ``retention`` (seconds or a
    timedelta) keeps this job's finished executions that long instead of the global
    history retention (the retention job applies it). ``dispatch`` names the
    service's dispatcher that runs it (``"celery"``, ``"inline"``, or any name given
    to ``SchedulerService(dispatchers=...)``; None: the service's default); the
    service refuses a name it does not have. The ``alert_*`` thresholds (seconds or
    timedeltas; ``alert_failures`` a count) open an incident when a slot is that late,
    that many runs in a row fail, a run goes on that long, or no run succeeds for that
    long (``docs/alerting-and-maintenance.md``); None takes the service's default.
    ``exclude_dates`` (dates, or ISO strings ``YYYY-MM-DD``) are days, read in the
    trigger's time zone, whose slots are recorded ``skipped`` instead of run.
    Everything is validated
    here, so a bad declaration fails at import, not at 3 a.m.::

        @scheduled_job(cron="0 9 * * MON-FRI", timezone="Europe/Berlin", max_retries=3)
        def send_report() -> None: ...
    """
    if callable(key):
        raise InvalidFunctionError(
            "@scheduled_job needs arguments: write @scheduled_job(cron=...) or "
            "@scheduled_job(interval=...)"
        )
    spec = build_trigger(cron=cron, interval=interval, at=at, trigger=trigger, timezone=timezone)
    if isinstance(spec, Manual) and trigger is None:
        raise InvalidTriggerError(
            "@scheduled_job needs a schedule: one of cron=, interval=, at= or trigger= "
            "(declare a job without one with @task)",
            field="trigger",
        )
    options: dict[str, Any] = {
        "names": names,
        "description": description,
        "kwargs": kwargs,
        "max_instances": max_instances,
        "overlap_policy": overlap_policy,
        "misfire_grace_time": misfire_grace_time,
        "coalesce": coalesce,
        "max_retries": max_retries,
        "retry_backoff": retry_backoff,
        "timeout": timeout,
        "queue": queue,
        "retention": retention,
        "dispatch": dispatch,
        "alert_late_after": alert_late_after,
        "alert_failures": alert_failures,
        "alert_max_runtime": alert_max_runtime,
        "alert_no_success_within": alert_no_success_within,
        "exclude_dates": exclude_dates,
        "enabled": enabled,
    }

    return _declaring(key, spec, options)


def task(
    key: str | None = None,
    *,
    names: Mapping[str, str] | None = None,
    description: str | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    max_retries: int = 0,
    retry_backoff: RetryBackoff | tuple[float, ...] | Mapping[str, float] | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    retention: timedelta | float | None = None,
    dispatch: str | None = None,
    alert_late_after: timedelta | float | None = None,
    alert_failures: int | None = None,
    alert_max_runtime: timedelta | float | None = None,
    alert_no_success_within: timedelta | float | None = None,
    enabled: bool = True,
) -> Callable[[F], F]:
    """Declare a function as a task: a job without a schedule, run when it is deferred
    (:meth:`SchedulerService.defer`) with keyword arguments checked against its
    signature. ``concurrency`` bounds how many of its runs go at once across the
    cluster (the others wait ``pending``); None runs every due one. With
    ``concurrency_key`` (the name of one of its arguments) the bound holds per value
    of that argument instead: at most ``concurrency`` runs per value at once.
    ``retention`` keeps its finished runs that long instead of the global retention;
    ``dispatch`` chooses the dispatcher its runs go to, and the ``alert_*`` thresholds
    open incidents, as for ``@scheduled_job``::

        @task("emails.welcome", max_retries=3, timeout=30)
        def send_welcome(user_id: int) -> None: ...

        @task("reports.build", concurrency=1, concurrency_key="customer_id")
        def build_report(customer_id: int) -> None: ...
    """
    if callable(key):
        raise InvalidFunctionError('@task needs parentheses: write @task() or @task("key")')
    options: dict[str, Any] = {
        "names": names,
        "description": description,
        "max_instances": 1 if concurrency is None else concurrency,
        "overlap_policy": OverlapPolicy.ALLOW if concurrency is None else OverlapPolicy.QUEUE,
        "concurrency_key": concurrency_key,
        "misfire_grace_time": None,
        "max_retries": max_retries,
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
    if concurrency is not None and (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_INSTANCES
    ):
        raise InvalidPolicyError(
            f"must be None or an integer in 1-{MAX_INSTANCES}, got {concurrency!r}",
            field="concurrency",
        )
    if concurrency_key is not None and concurrency is None:
        raise InvalidPolicyError(
            "needs concurrency=N: the number of runs at once per value of the argument",
            field="concurrency_key",
        )
    return _declaring(key, Manual(), options)


def _declaring(key: str | None, spec: TriggerSpec, options: Mapping[str, Any]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        check_function(func)
        if hasattr(func, _ATTRIBUTE):
            raise InvalidFunctionError(
                f"{function_name(func)} is already declared as a job or a task: declare it once"
            )
        name = function_name(func)
        definition = build_definition(
            key=key if key is not None else name, func=name, trigger=spec, options=options
        )
        check_kwargs_signature(func, definition.kwargs, partial=isinstance(spec, Manual))
        check_concurrency_key(func, definition.concurrency_key)
        setattr(func, _ATTRIBUTE, definition)
        return func

    return decorate


def get_definition(func: object) -> JobDefinition | None:
    """The job declared on ``func`` by ``@scheduled_job``, if any."""
    definition = getattr(func, _ATTRIBUTE, None)
    return definition if isinstance(definition, JobDefinition) else None
