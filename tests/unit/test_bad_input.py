"""Every bad input raises its own TaskmgrError, through the decorator and through
create_job/update_job alike, and leaves nothing behind in storage."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import taskmgr
from taskmgr import (
    InvalidCronError,
    InvalidDatetimeError,
    InvalidFunctionError,
    InvalidIntervalError,
    InvalidJobKeyError,
    InvalidKwargsError,
    InvalidPolicyError,
    InvalidTimezoneError,
    InvalidTriggerError,
    TaskmgrError,
    scheduled_job,
)
from taskmgr.testing import FakeClock, make_test_service


def target(x: int = 0) -> int:
    return x


# (decorator/create_job arguments, expected error, text the message must contain)
BAD: list[tuple[dict[str, Any], type[TaskmgrError], str]] = [
    ({"cron": "* * * *"}, InvalidCronError, "5 fields"),
    ({"cron": "61 * * * *"}, InvalidCronError, "0-59"),
    ({"cron": "0 24 * * *"}, InvalidCronError, "0-23"),
    ({"cron": "0 0 0 * *"}, InvalidCronError, "1-31"),
    ({"cron": "0 0 * 13 *"}, InvalidCronError, "1-12"),
    ({"cron": "*/0 * * * *"}, InvalidCronError, "step"),
    ({"cron": "1- * * * *"}, InvalidCronError, "minute"),
    ({"cron": "1,,2 * * * *"}, InvalidCronError, "minute"),
    ({"cron": "\uff11 * * * *"}, InvalidCronError, "ASCII"),
    ({"cron": "0 " * 200 + "*"}, InvalidCronError, "256"),
    ({"cron": "0 0 30 2 *"}, InvalidCronError, "never"),
    ({"cron": "@reboot"}, InvalidCronError, "@reboot"),
    ({"cron": "0 0 * * *", "timezone": "Mars/Olympus"}, InvalidTimezoneError, "timezone"),
    ({"cron": "0 0 * * *", "timezone": "../../etc/passwd"}, InvalidTimezoneError, "timezone"),
    ({"interval": 0}, InvalidIntervalError, "interval"),
    ({"interval": -5}, InvalidIntervalError, "interval"),
    ({"interval": float("nan")}, InvalidIntervalError, "interval"),
    ({"interval": float("inf")}, InvalidIntervalError, "interval"),
    ({"interval": timedelta(days=10**6)}, InvalidIntervalError, "interval"),
    ({"at": datetime(2030, 1, 1)}, InvalidDatetimeError, "date.at"),
    ({"cron": "* * * * *", "interval": 60}, InvalidTriggerError, "at most one"),
    ({"interval": 60, "overlap_policy": "sometimes"}, InvalidPolicyError, "overlap_policy"),
    ({"interval": 60, "max_instances": 0}, InvalidPolicyError, "max_instances"),
    ({"interval": 60, "max_retries": -1}, InvalidPolicyError, "max_retries"),
    ({"interval": 60, "misfire_grace_time": -1}, InvalidPolicyError, "misfire_grace_time"),
    ({"interval": 60, "timeout": 0}, InvalidPolicyError, "timeout"),
    ({"interval": 60, "retry_backoff": (0, 10, 0.5)}, InvalidPolicyError, "retry_backoff"),
    ({"interval": 60, "retry_backoff": (1, 10, 2)}, InvalidPolicyError, "jitter"),
    (
        {
            "interval": 60,
            "names": {f"l{chr(97 + i // 26)}{chr(97 + i % 26)}": "n" for i in range(51)},
        },
        InvalidPolicyError,
        "at most 50",
    ),
    ({"interval": 60, "names": {"en_US": "x"}}, InvalidPolicyError, "language tags"),
    ({"interval": 60, "names": {"en": "n" * 201}}, InvalidPolicyError, "200"),
    ({"interval": 60, "kwargs": {"x": datetime(2030, 1, 1)}}, InvalidKwargsError, "kwargs.x"),
    ({"interval": 60, "kwargs": {"x": {1, 2}}}, InvalidKwargsError, "kwargs.x"),
    ({"interval": 60, "kwargs": {"x": Decimal("1")}}, InvalidKwargsError, "kwargs.x"),
    ({"interval": 60, "kwargs": {"x": float("nan")}}, InvalidKwargsError, "kwargs.x"),
    ({"interval": 60, "kwargs": {"unknown": 1}}, InvalidKwargsError, "signature"),
]
BAD_KEYS = ["", "bad key", "a/b", "-leading", "x" * 129, "tab\t", "nul\x00", "é"]


@pytest.mark.parametrize(
    ("arguments", "error", "text"), [*BAD, ({}, InvalidTriggerError, "needs a schedule")]
)
def test_decorator_refuses_bad_input(
    arguments: dict[str, Any], error: type[TaskmgrError], text: str
) -> None:
    with pytest.raises(error) as caught:
        scheduled_job("some.key", **arguments)(target)
    assert text in str(caught.value)
    assert not hasattr(target, "__taskmgr_job__")


@pytest.mark.parametrize(("arguments", "error", "text"), BAD)
def test_create_job_refuses_bad_input_and_writes_nothing(
    arguments: dict[str, Any], error: type[TaskmgrError], text: str
) -> None:
    with make_test_service([target], clock=FakeClock()) as service:
        with pytest.raises(error) as caught:
            service.create_job("some.key", target, **arguments)
        assert text in str(caught.value)
        assert service.list_jobs() == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_job_keys_are_refused_everywhere(key: str) -> None:
    with pytest.raises(InvalidJobKeyError):
        scheduled_job(key, interval=60)(target)
    with make_test_service([target], clock=FakeClock()) as service:
        with pytest.raises(InvalidJobKeyError):
            service.create_job(key, target, interval=60)
        assert service.list_jobs() == []


@pytest.mark.parametrize(("arguments", "error", "text"), BAD[:20] + BAD[22:33])
def test_update_job_refuses_bad_input_and_changes_nothing(
    arguments: dict[str, Any], error: type[TaskmgrError], text: str
) -> None:
    with make_test_service([target], clock=FakeClock()) as service:
        before = service.create_job("some.key", target, cron="0 9 * * *")
        if not {"cron", "interval", "at", "trigger"} & set(arguments):
            arguments = {k: v for k, v in arguments.items() if k != "interval"}
        with pytest.raises(error):
            service.update_job("some.key", **arguments)
        assert service.get_job("some.key") == before


def test_functions_that_cannot_be_found_again_are_refused() -> None:
    def closure() -> None:
        pass

    class Holder:
        def method(self) -> None:
            pass

    refused = [
        lambda: None,
        closure,
        Holder().method,
        functools.partial(target, x=1),
        Holder,
        print,
    ]
    for func in refused:
        with pytest.raises(InvalidFunctionError):
            scheduled_job("k", interval=60)(func)  # type: ignore[type-var]
        with make_test_service(clock=FakeClock()) as service, pytest.raises(InvalidFunctionError):
            service.create_job("k", func, interval=60)  # type: ignore[arg-type]


def test_decorator_needs_arguments_and_applies_once() -> None:
    with pytest.raises(InvalidFunctionError, match="needs arguments"):
        scheduled_job(target)  # type: ignore[arg-type]

    def fresh() -> None:
        pass

    fresh.__qualname__ = "fresh"
    decorated = scheduled_job("k", interval=60)(fresh)
    assert decorated is fresh  # the function is returned unchanged
    with pytest.raises(InvalidFunctionError, match="once"):
        scheduled_job("k", interval=60)(fresh)


def test_function_names_are_an_allow_list() -> None:
    with make_test_service(clock=FakeClock()) as service:
        with pytest.raises(taskmgr.FunctionNotRegisteredError):
            service.create_job("k", "os.system", interval=60)
        with pytest.raises(taskmgr.FunctionNotRegisteredError):
            service.create_job("k", "builtins.eval", interval=60)
        assert service.list_jobs() == []


def test_errors_keep_builtin_meanings() -> None:
    assert issubclass(InvalidCronError, ValueError)
    assert issubclass(InvalidFunctionError, TypeError)
    assert issubclass(taskmgr.JobNotFoundError, LookupError)
    assert issubclass(taskmgr.ServiceStateError, RuntimeError)


def test_query_arguments_are_validated_too() -> None:
    with make_test_service([target], clock=FakeClock()) as service:
        with pytest.raises(taskmgr.InvalidInputError, match="state"):
            service.list_jobs(state="bogus")
        with pytest.raises(taskmgr.InvalidInputError, match="limit"):
            service.list_executions(limit=0)
        with pytest.raises(taskmgr.InvalidInputError, match="status"):
            service.list_executions(status="nope")
        with pytest.raises(taskmgr.InvalidInputError, match="cursor"):
            service.list_executions(cursor="not-a-cursor")
        with pytest.raises(taskmgr.InvalidDatetimeError):
            service.list_executions(since=datetime(2026, 1, 1))
        with pytest.raises(taskmgr.InvalidInputError, match="retention_days"):
            service.cleanup_history(-1)
        with pytest.raises(taskmgr.InvalidInputError, match="n"):
            service.preview("k", 0)
