"""Turn what a user writes (decorator arguments, ``create_job``/``update_job`` arguments)
into a validated :class:`~taskmgr.core.models.JobDefinition`. One path for every entry point."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import NoneType
from typing import Any

from taskmgr.core.models import JobDefinition, RetryBackoff
from taskmgr.core.targets import JobTarget
from taskmgr.core.triggers import Cron, Date, Interval, Manual, TriggerSpec, parse_trigger
from taskmgr.exceptions import (
    InvalidFunctionError,
    InvalidKwargsError,
    InvalidPolicyError,
    InvalidTriggerError,
)

__all__ = [
    "argument_value",
    "build_definition",
    "build_trigger",
    "check_concurrency_key",
    "check_function",
    "function_name",
]

#: Options of a job besides its trigger, with their defaults (``JobDefinition``'s).
OPTION_NAMES = (
    "names",
    "description",
    "kwargs",
    "max_instances",
    "overlap_policy",
    "concurrency_key",
    "misfire_grace_time",
    "coalesce",
    "max_retries",
    "retry_backoff",
    "timeout",
    "queue",
    "retention",
    "dispatch",
    "alert_late_after",
    "alert_failures",
    "alert_max_runtime",
    "alert_no_success_within",
    "exclude_dates",
    "enabled",
)
TRIGGER_ARGS = ("cron", "interval", "at", "trigger")


def check_function(func: object) -> Callable[..., Any]:
    """Refuse what cannot be found again by name: lambdas, closures, methods, partials."""
    if isinstance(func, functools.partial):
        raise InvalidFunctionError("functools.partial objects cannot be scheduled; pass kwargs=")
    if inspect.ismethod(func):
        raise InvalidFunctionError(
            f"bound method {func.__qualname__} cannot be scheduled: use a module-level function"
        )
    if not inspect.isfunction(func):
        raise InvalidFunctionError(
            f"only module-level functions can be scheduled, got {type(func).__name__}"
        )
    if func.__name__ == "<lambda>":
        raise InvalidFunctionError("lambdas cannot be scheduled: use a module-level function")
    if "<locals>" in func.__qualname__:
        raise InvalidFunctionError(
            f"{func.__qualname__} is defined inside a function (a closure) and cannot be "
            "scheduled: define it at module level"
        )
    return func


def function_name(func: Callable[..., Any]) -> str:
    """The registered name of a function: ``module.qualname`` (``qualname`` in ``__main__``);
    a :class:`~taskmgr.core.targets.JobTarget`'s own name."""
    if isinstance(func, JobTarget):
        return func.registered_name
    module = getattr(func, "__module__", None) or ""
    qualname: str = getattr(func, "__qualname__", "")
    return qualname if module in ("", "__main__") else f"{module}.{qualname}"


#: Signatures by function: ``inspect.signature`` costs about as much as everything
#: else a defer checks, and a registered function's signature does not change.
_signatures: weakref.WeakKeyDictionary[Callable[..., Any], inspect.Signature] = (
    weakref.WeakKeyDictionary()
)


def signature_of(func: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(func)``, kept for as long as ``func`` lives."""
    try:
        return _signatures[func]
    except KeyError:
        signature = _signatures[func] = inspect.signature(func)
        return signature
    except TypeError:  # not weakly referable (or not hashable): not kept
        return inspect.signature(func)


def check_kwargs_signature(
    func: Callable[..., Any], kwargs: Mapping[str, Any], *, partial: bool = False
) -> None:
    """Refuse kwargs the function cannot accept (unknown or, unless ``partial``, missing
    parameters). A task's own kwargs are partial: its runs are deferred with the rest."""
    try:
        signature = signature_of(func)
        signature.bind_partial(**kwargs) if partial else signature.bind(**kwargs)
    except TypeError as exc:
        raise InvalidKwargsError(
            f"do not match the signature of {function_name(func)}: {exc}", field="kwargs"
        ) from None


#: Parameters that a keyword argument can fill (a concurrency key must name one).
_BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def check_concurrency_key(func: Callable[..., Any], key: str | None) -> None:
    """Refuse a ``concurrency_key`` that names no argument ``func`` takes by keyword, or
    one whose default is not a JSON scalar (a run that omits the argument is grouped by
    its default)."""
    if key is None:
        return
    parameter = signature_of(func).parameters.get(key)
    if parameter is None or parameter.kind not in _BY_KEYWORD:
        raise InvalidPolicyError(
            f"{function_name(func)} has no argument {key!r} that can be passed by keyword",
            field="concurrency_key",
        )
    default = parameter.default
    if default is not inspect.Parameter.empty and type(default) not in (str, int, bool, NoneType):
        raise InvalidPolicyError(
            f"the default of argument {key!r} of {function_name(func)} must be a string, "
            f"an integer, a boolean or None, got {type(default).__name__}",
            field="concurrency_key",
        )


def argument_value(func: Callable[..., Any], name: str, kwargs: Mapping[str, Any]) -> Any:
    """The value ``func`` receives for its argument ``name`` when called with ``kwargs``
    (checked against its signature already): the given one, else the default.

    :raises InvalidKwargsError: ``func`` has no such argument, or it has no default and
        is not given (the function was changed since the key was set).
    """
    if name in kwargs:
        return kwargs[name]
    parameter = signature_of(func).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise InvalidKwargsError(
            f"{function_name(func)} has no argument {name!r} with a default, and it is "
            "not given (it is the task's concurrency_key)",
            field=f"kwargs.{name}",
        )
    return parameter.default


def build_trigger(
    *,
    cron: str | None = None,
    interval: timedelta | float | None = None,
    at: datetime | None = None,
    trigger: TriggerSpec | Mapping[str, Any] | None = None,
    timezone: str = "UTC",
) -> TriggerSpec:
    given = [
        name
        for name, value in zip(TRIGGER_ARGS, (cron, interval, at, trigger), strict=True)
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidTriggerError(
            f"at most one of cron=, interval=, at= or trigger= may be given "
            f"(got {', '.join(given)})",
            field="trigger",
        )
    if not given:
        return Manual()
    if cron is not None:
        return Cron(cron, timezone=timezone)
    if interval is not None:
        return Interval(interval)
    if at is not None:
        return Date(at)
    if isinstance(trigger, Cron | Interval | Date | Manual):
        return trigger
    return parse_trigger(trigger)


def build_definition(
    *,
    key: str,
    func: str,
    trigger: TriggerSpec,
    options: Mapping[str, Any],
) -> JobDefinition:
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"unexpected job options: {', '.join(sorted(unknown))}")
    data = dict(options)
    backoff = data.get("retry_backoff")
    if backoff is None:
        data.pop("retry_backoff", None)
    elif isinstance(backoff, tuple | list):
        # (base, max, jitter), shorter tuples keep the remaining defaults
        data["retry_backoff"] = dict(zip(("base", "max", "jitter"), backoff, strict=False))
    elif isinstance(backoff, RetryBackoff):
        data["retry_backoff"] = backoff.model_dump()
    return JobDefinition(key=key, func=func, trigger=trigger, **data)
