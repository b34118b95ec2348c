"""Small validators shared by every entry point (decorator, service, HTTP API).

Each one raises the specific :class:`~taskmgr.exceptions.InvalidInputError` subclass,
naming the offending field, so one rule backs every way a value can come in.
:func:`reraise_validation` turns a pydantic ``ValidationError`` back into the
taskmgr error that caused it, so Python callers never see pydantic's error type.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import pydantic

from taskmgr.exceptions import (
    InvalidDatetimeError,
    InvalidInputError,
    InvalidJobKeyError,
    InvalidKwargsError,
    InvalidPolicyError,
    InvalidTimezoneError,
    TaskmgrError,
)

__all__ = [
    "JOB_KEY_PATTERN",
    "KWARGS_MAX_BYTES",
    "KWARGS_MAX_DEPTH",
    "MAX_ACTOR",
    "MAX_RETENTION",
    "ensure_aware",
    "reraise_validation",
    "retention_seconds",
    "validate_actor",
    "validate_job_key",
    "validate_kwargs",
    "validate_timezone",
]

JOB_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
"""A job key, matched with ``fullmatch`` (so a trailing newline cannot sneak past ``$``)."""

KWARGS_MAX_BYTES = 64 * 1024
KWARGS_MAX_DEPTH = 32
# CPython refuses int <-> str conversions above 4300 digits (CVE-2020-10735): a bigger
# int could neither be serialized nor read back.
_INT_LIMIT = 10**4300

# IANA names are ASCII path segments of letters, digits, '_', '+' and '-'. Checking the
# shape first keeps '..', absolute paths, NUL and spaces away from the file system.
_TZ_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", re.ASCII)
_TZ_MAX_LEN = 64

_JSON_TYPES = frozenset({type(None), bool, int, float, str, list, dict})


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_job_key(key: object) -> str:
    """Return ``key`` if it is a valid job key, else raise :class:`InvalidJobKeyError`."""
    if not isinstance(key, str):
        raise InvalidJobKeyError(f"must be a string, got {type(key).__name__}", field="key")
    if JOB_KEY_PATTERN.fullmatch(key) is None:
        raise InvalidJobKeyError(
            f"{_show(key)} must be 1-128 ASCII characters: a letter or digit, then letters, "
            "digits, '.', '_', ':' or '-'",
            field="key",
        )
    return key


def validate_timezone(name: object) -> str:
    """Return ``name`` if it is a time zone name that :mod:`zoneinfo` knows.

    Only IANA names (``"Europe/Berlin"``, ``"UTC"``, aliases such as ``"US/Eastern"``);
    offsets such as ``"+02:00"`` are refused because they have no DST rules.
    """
    if not isinstance(name, str):
        raise InvalidTimezoneError(
            f"must be an IANA time zone name, got {type(name).__name__}", field="timezone"
        )
    if len(name) > _TZ_MAX_LEN or _TZ_NAME.fullmatch(name) is None:
        raise InvalidTimezoneError(
            f"{_show(name)} is not an IANA time zone name (e.g. 'Europe/Berlin', 'UTC')",
            field="timezone",
        )
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:  # not found, not a TZif file, a directory
        raise InvalidTimezoneError(
            f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Berlin')",
            field="timezone",
        ) from exc
    return name


def ensure_aware(value: object, field: str) -> datetime:
    """Return ``value`` if it is a time-zone-aware datetime, else raise."""
    if not isinstance(value, datetime):
        raise InvalidDatetimeError(
            f"expected an aware datetime, got {type(value).__name__}", field=field
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDatetimeError(
            f"naive datetime {value.isoformat()} has no time zone; pass an aware one, "
            "e.g. datetime(..., tzinfo=timezone.utc)",
            field=field,
        )
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{_show(key)}]"


def _check_str(text: str, path: str) -> None:
    if "\x00" in text:
        raise InvalidKwargsError("string contains a NUL character", field=path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKwargsError(
            "string is not valid Unicode (lone surrogate)", field=path
        ) from None


def _compact_json(value: object) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def validate_kwargs(
    value: object, field: str = "kwargs", *, max_bytes: int = KWARGS_MAX_BYTES
) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object of plain JSON values, else raise.

    Allowed: ``None``, ``bool``, ``int`` (at most 4300 digits), finite ``float``,
    ``str`` (no NUL), ``list`` and ``dict`` with ``str`` keys, nested at most
    :data:`KWARGS_MAX_DEPTH` containers deep (the top-level dict counts), serialized
    in at most ``max_bytes`` bytes (default :data:`KWARGS_MAX_BYTES`). Exact types
    only: tuples, sets, subclasses (``IntEnum``, ``OrderedDict``), datetimes,
    ``Decimal`` and bytes are refused because they would not come back as the same
    type. The walk is
    iterative, so hostile nesting cannot raise ``RecursionError``.
    """
    if type(value) is not dict:
        raise InvalidKwargsError(
            f"must be a dict of JSON values, got {type(value).__name__}", field=field
        )
    # ``size`` never exceeds the length of the compact JSON text, so it can stop the walk
    # of a huge value early without refusing a valid one; json.dumps measures exactly.
    size = 0
    stack: list[tuple[object, str, int]] = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if kind not in _JSON_TYPES:
            hint = " (use a list: tuples do not round-trip)" if kind is tuple else ""
            raise InvalidKwargsError(f"value of type {kind.__name__} is not JSON{hint}", field=path)
        # The type is exact from here on, so isinstance() only narrows for mypy.
        if item is None or isinstance(item, bool):
            size += 4
        elif isinstance(item, int):
            if abs(item) >= _INT_LIMIT:
                raise InvalidKwargsError("int has more than 4300 digits", field=path)
            size += 1
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidKwargsError(f"{item!r} is not valid JSON", field=path)
            size += 1
        elif isinstance(item, str):
            _check_str(item, path)
            size += len(item) + 2
        else:
            assert isinstance(item, list | dict)
            if depth > KWARGS_MAX_DEPTH:
                raise InvalidKwargsError(
                    f"nested more than {KWARGS_MAX_DEPTH} levels deep", field=path
                )
            size += 2 + max(len(item) - 1, 0)  # brackets and commas
            if size > max_bytes:  # before pushing a huge container's children
                break
            if isinstance(item, list):
                for index, child in enumerate(item):
                    stack.append((child, f"{path}[{index}]", depth + 1))
            else:
                for key, child in item.items():
                    if type(key) is not str:
                        raise InvalidKwargsError(
                            f"key {_show(key)} of type {type(key).__name__} is not a string",
                            field=path,
                        )
                    _check_str(key, path)
                    stack.append((child, _join(path, key), depth + 1))
                    size += len(key) + 3  # "key":
        if size > max_bytes:
            break
    if size > max_bytes or len(_compact_json(value)) > max_bytes:
        raise InvalidKwargsError(f"serialized size exceeds {max_bytes} bytes", field=field)
    return value


#: The longest ``actor`` recorded on an execution.
MAX_ACTOR = 200


def validate_actor(actor: object) -> str | None:
    """Return ``actor`` (who asked for a run: a user, a service) if it is None or a
    string of at most :data:`MAX_ACTOR` characters without NUL, else raise."""
    if actor is not None and (
        not isinstance(actor, str) or len(actor) > MAX_ACTOR or "\x00" in actor
    ):
        raise InvalidInputError(
            f"must be a string of at most {MAX_ACTOR} characters", field="actor"
        )
    return actor


def _loc_path(prefix: str | None, loc: tuple[int | str, ...]) -> str | None:
    path = prefix or ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or None


def reraise_validation(
    exc: pydantic.ValidationError,
    *,
    error_class: type[InvalidInputError] = InvalidInputError,
    prefix: str | None = None,
) -> NoReturn:
    """Raise the taskmgr error behind ``exc``, else an ``error_class`` naming the field.

    Validators raise taskmgr errors (they subclass ``ValueError``, so pydantic wraps
    them); this unwraps the first one. Pydantic's own errors (missing or extra
    fields, wrong types) become ``error_class`` with the field path from ``loc``,
    prefixed with ``prefix`` (e.g. ``"cron"`` gives ``"cron.expression"``).
    Call it inside ``except pydantic.ValidationError as exc:``.
    """
    errors = exc.errors()
    for error in errors:
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, TaskmgrError):
            raise cause from None
    first = errors[0] if errors else None
    if first is None:  # pragma: no cover - pydantic never raises an empty error list
        raise error_class(str(exc)) from None
    raise error_class(first["msg"], field=_loc_path(prefix, first["loc"])) from None


#: Longest ``retention`` of a job's history accepted (seconds): a century.
MAX_RETENTION = 36_500 * 86400.0


def retention_seconds(value: Any) -> float | None:
    """A job's ``retention`` (seconds or a timedelta) as seconds, or None.

    :raises InvalidPolicyError: not a positive duration of at most a century.
    """
    return bounded_seconds(
        value,
        field="retention",
        most=MAX_RETENTION,
        error=InvalidPolicyError,
        kinds="a number of seconds or a timedelta",
        bound=f"a positive duration of at most {MAX_RETENTION:g} seconds (a century)",
    )


def bounded_seconds(
    value: Any,
    *,
    field: str,
    most: float,
    error: type[InvalidInputError],
    kinds: str,
    bound: str,
) -> float | None:
    """``value`` (seconds or a timedelta) as seconds, or None when it is None.

    :raises error: not a number or a timedelta ("must be ``kinds``"), or not in
        ``(0, most]`` ("must be ``bound``").
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"must be {kinds}, got {value!r}", field=field)
    if not (math.isfinite(value) and 0 < value <= most):
        raise error(f"must be {bound}, got {value!r}", field=field)
    return float(value)
