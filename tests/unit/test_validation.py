"""Shared validators: job keys, time zones, aware datetimes, JSON kwargs, pydantic unwrapping,
arguments against a function's signature."""

from __future__ import annotations

import enum
import gc
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from taskmgr.core.definition import _signatures, check_kwargs_signature, signature_of
from taskmgr.core.validation import (
    JOB_KEY_PATTERN,
    KWARGS_MAX_BYTES,
    KWARGS_MAX_DEPTH,
    ensure_aware,
    reraise_validation,
    validate_job_key,
    validate_kwargs,
    validate_timezone,
)
from taskmgr.exceptions import (
    InvalidCronError,
    InvalidDatetimeError,
    InvalidInputError,
    InvalidJobKeyError,
    InvalidKwargsError,
    InvalidTimezoneError,
    InvalidTriggerError,
)

# -- job keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["a", "A", "0", "reports.daily", "billing:invoice-run_2", "a..b", "x" * 128]
)
def test_job_key_accepted(key: str) -> None:
    assert validate_job_key(key) == key
    assert JOB_KEY_PATTERN.fullmatch(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x" * 129,
        "a/b",
        "..",
        ".hidden",
        "-x",
        "%2F",
        " a",
        "a ",
        "a\n",
        "a\x00",
        "a\ud800",
        "bad key/x",
        "caf\u00e9",
        "\uff41",  # full-width a
        "x'; DROP TABLE jobs;--",
    ],
)
def test_job_key_refused(key: str) -> None:
    with pytest.raises(InvalidJobKeyError) as info:
        validate_job_key(key)
    assert info.value.field == "key"
    assert "1-128 ASCII characters" in str(info.value)


@pytest.mark.parametrize("key", [None, 1, b"abc", ["a"]])
def test_job_key_not_a_string(key: object) -> None:
    with pytest.raises(InvalidJobKeyError, match="must be a string"):
        validate_job_key(key)


def test_job_key_message_is_bounded() -> None:
    with pytest.raises(InvalidJobKeyError) as info:
        validate_job_key("/" * 100_000)
    assert len(str(info.value)) < 200


# -- time zones ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "US/Eastern", "Etc/GMT+2"]
)
def test_timezone_accepted(name: str) -> None:
    assert validate_timezone(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Mars/Olympus",
        "../../etc/passwd",
        "Europe/../Europe/Berlin",
        "/usr/share/zoneinfo/UTC",
        "+02:00",
        "UTC+2",
        "UTC ",
        " UTC",
        "UTC\x00",
        "Europe",  # a directory
        "Europe/",
        "zone.tab",
        "Europe/Berlin\n",
        "x" * 65,
        "Europe\\Berlin",
    ],
)
def test_timezone_refused(name: str) -> None:
    with pytest.raises(InvalidTimezoneError) as info:
        validate_timezone(name)
    assert info.value.field == "timezone"
    assert "IANA" in str(info.value)


@pytest.mark.parametrize("name", [None, 2, UTC])
def test_timezone_not_a_string(name: object) -> None:
    with pytest.raises(InvalidTimezoneError, match="must be an IANA time zone name"):
        validate_timezone(name)


# -- aware datetimes -------------------------------------------------------------------


def test_ensure_aware() -> None:
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    assert ensure_aware(aware, "since") is aware
    with pytest.raises(InvalidDatetimeError) as info:
        ensure_aware(datetime(2026, 1, 1), "since")
    assert info.value.field == "since"
    assert "naive" in str(info.value)
    for value in ["2026-01-01T00:00:00Z", date(2026, 1, 1), 0, None]:
        with pytest.raises(InvalidDatetimeError, match="expected an aware datetime"):
            ensure_aware(value, "since")


def test_ensure_aware_rejects_tzinfo_without_offset() -> None:
    class NoOffset(timezone.__base__):  # type: ignore[name-defined,misc]
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

    with pytest.raises(InvalidDatetimeError):
        ensure_aware(datetime(2026, 1, 1, tzinfo=NoOffset()), "at")


# -- kwargs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": None, "b": True, "c": 1, "d": -1.5, "e": "text", "f": [1, "x", None], "g": {"h": {}}},
        {"emoji": "\U0001f600", "rtl": "\u05e9\u05dc\u05d5\u05dd", "combining": "e\u0301"},
        {"big": 10**4299},
        {"nested": [[[]]]},
    ],
)
def test_kwargs_accepted(value: dict[str, Any]) -> None:
    assert validate_kwargs(value) is value


class Color(enum.IntEnum):
    RED = 1


BAD_KWARGS: list[tuple[object, str, str]] = [
    ({"items": [1, 2, {3}]}, "kwargs.items[2]", "value of type set is not JSON"),
    ({"x": float("nan")}, "kwargs.x", "nan is not valid JSON"),
    ({"x": float("inf")}, "kwargs.x", "inf"),
    ({"x": [float("-inf")]}, "kwargs.x[0]", "-inf"),
    ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, "kwargs.when", "type datetime"),
    ({"d": Decimal("1")}, "kwargs.d", "type Decimal"),
    ({"b": b"bytes"}, "kwargs.b", "type bytes"),
    ({"t": (1, 2)}, "kwargs.t", "tuples do not round-trip"),
    ({"e": Color.RED}, "kwargs.e", "type Color"),
    ({"o": OrderedDict()}, "kwargs.o", "type OrderedDict"),
    ({"f": print}, "kwargs.f", "not JSON"),
    ({"s": "a\x00b"}, "kwargs.s", "NUL"),
    ({"s": "\ud800"}, "kwargs.s", "lone surrogate"),
    ({"a\x00": 1}, "kwargs", "NUL"),
    ({"big": 10**4300}, "kwargs.big", "4300 digits"),
    ({"x": {1: "a"}}, "kwargs.x", "key 1 of type int is not a string"),
    ({"odd key": [1, {"k": set()}]}, "kwargs['odd key'][1].k", "type set"),
    ([1, 2], "kwargs", "must be a dict"),
    (None, "kwargs", "must be a dict"),
    ("{}", "kwargs", "must be a dict"),
    (OrderedDict(), "kwargs", "must be a dict"),
    ({"s": "x" * KWARGS_MAX_BYTES}, "kwargs", f"exceeds {KWARGS_MAX_BYTES} bytes"),
    ({"l": [0] * (KWARGS_MAX_BYTES // 2)}, "kwargs", "exceeds"),
]


@pytest.mark.parametrize(("value", "field", "words"), BAD_KWARGS)
def test_kwargs_refused(value: object, field: str, words: str) -> None:
    with pytest.raises(InvalidKwargsError) as info:
        validate_kwargs(value)
    assert info.value.field == field
    assert words in str(info.value)


def test_kwargs_field_name() -> None:
    with pytest.raises(InvalidKwargsError) as info:
        validate_kwargs({"x": set()}, field="body.kwargs")
    assert info.value.field == "body.kwargs.x"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_kwargs_depth_limit() -> None:
    assert validate_kwargs(_nested(KWARGS_MAX_DEPTH))
    with pytest.raises(InvalidKwargsError, match="nested more than 32 levels"):
        validate_kwargs(_nested(KWARGS_MAX_DEPTH + 1))


def test_kwargs_hostile_nesting_never_recurses() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidKwargsError, match="nested"):
        validate_kwargs({"x": deep})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidKwargsError, match="nested"):
        validate_kwargs({"x": loop})


def test_kwargs_size_limit_is_exact() -> None:
    # {"s":"..."} is 8 bytes of JSON around the text.
    assert validate_kwargs({"s": "x" * (KWARGS_MAX_BYTES - 8)})
    with pytest.raises(InvalidKwargsError, match="exceeds"):
        validate_kwargs({"s": "x" * (KWARGS_MAX_BYTES - 7)})
    # Multi-byte characters count in UTF-8 bytes.
    with pytest.raises(InvalidKwargsError, match="exceeds"):
        validate_kwargs({"s": "\u00e9" * (KWARGS_MAX_BYTES // 2)})


def test_kwargs_huge_input_stops_early() -> None:
    with pytest.raises(InvalidKwargsError, match="exceeds"):
        validate_kwargs({"l": [None] * 10_000_000})


# -- reraise_validation ------------------------------------------------------------------


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    key: str
    tags: list[int] = []

    @pydantic.field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return validate_job_key(value)


def _error_of(data: dict[str, Any], **options: Any) -> InvalidInputError:
    with pytest.raises(pydantic.ValidationError) as info:
        _Model.model_validate(data)
    with pytest.raises(InvalidInputError) as raised:
        reraise_validation(info.value, **options)
    return raised.value


def test_reraise_unwraps_our_error() -> None:
    error = _error_of({"key": "a/b"})
    assert type(error) is InvalidJobKeyError
    assert error.field == "key"
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_reraise_prefers_our_error_over_pydantic_ones() -> None:
    error = _error_of({"tags": ["x"], "key": "a/b"})
    assert type(error) is InvalidJobKeyError


def test_reraise_names_the_field_of_pydantic_errors() -> None:
    error = _error_of({"key": "ok", "tags": [1, "x"]})
    assert type(error) is InvalidInputError
    assert error.field == "tags[1]"
    error = _error_of({"key": "ok", "other": 1}, error_class=InvalidTriggerError, prefix="job")
    assert type(error) is InvalidTriggerError
    assert error.field == "job.other"
    assert "Extra inputs are not permitted" in str(error)
    error = _error_of({}, prefix="job")
    assert error.field == "job.key"


def test_reraise_keeps_specific_trigger_errors() -> None:
    class Holder(pydantic.BaseModel):
        expression: str

        @pydantic.field_validator("expression")
        @classmethod
        def _check(cls, value: str) -> str:
            raise InvalidCronError("boom", field="cron")

    with pytest.raises(pydantic.ValidationError) as info:
        Holder(expression="x")
    with pytest.raises(InvalidCronError, match="cron: boom"):
        reraise_validation(info.value)


# -- arguments against a function's signature ---------------------------------------


def test_a_signature_is_read_once_per_function_and_dropped_with_it() -> None:
    def task(n: int, *, label: str = "") -> None: ...

    assert signature_of(task) is signature_of(task)
    check_kwargs_signature(task, {"n": 1, "label": "x"})
    with pytest.raises(InvalidKwargsError, match=r"do not match the signature of .*task"):
        check_kwargs_signature(task, {"label": "x"})  # n is missing
    check_kwargs_signature(task, {"label": "x"}, partial=True)
    assert task in _signatures
    del task
    gc.collect()
    assert not any(getattr(f, "__name__", "") == "task" for f in list(_signatures.keys()))


class _Unhashable:
    __hash__ = None  # type: ignore[assignment]

    def __call__(self, n: int) -> None: ...


def test_a_callable_that_cannot_be_kept_is_still_checked() -> None:
    check_kwargs_signature(_Unhashable(), {"n": 1})
    with pytest.raises(InvalidKwargsError, match="unexpected keyword argument 'm'"):
        check_kwargs_signature(_Unhashable(), {"n": 1, "m": 2})
