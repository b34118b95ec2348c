"""Checks of the service's own arguments (page sizes, statuses, cursors, timings),
raising :class:`~taskmgr.exceptions.InvalidInputError` naming the argument."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import UTC, datetime

from taskmgr.core.models import Execution, ExecutionStatus
from taskmgr.core.triggers import MAX_DATETIME, MIN_DATETIME
from taskmgr.exceptions import InvalidInputError

__all__ = [
    "MAX_PAGE",
    "check_limit",
    "decode_audit_cursor",
    "decode_cursor",
    "encode_audit_cursor",
    "encode_cursor",
    "non_negative",
    "positive",
    "status",
]

MAX_PAGE = 500
#: The id in a cursor: execution ids are UUID strings.
_CURSOR_ID = re.compile(r"[A-Za-z0-9-]{1,64}", re.ASCII)


def positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"must be a positive number, got {value!r}", field=name)
    if value <= 0:
        raise InvalidInputError(f"must be a positive number, got {value!r}", field=name)
    return float(value)


def non_negative(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidInputError(f"must be a number >= 0, got {value!r}", field=name)
    return float(value)


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"must be an integer in 1-{MAX_PAGE}, got {limit!r}", field="limit")


def status(value: ExecutionStatus | str) -> ExecutionStatus:
    try:
        return ExecutionStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ExecutionStatus)
        raise InvalidInputError(
            f"must be one of {allowed}, got {value!r}", field="status"
        ) from None


def encode_cursor(execution: Execution) -> str:
    raw = json.dumps([execution.created_at.isoformat(), execution.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, execution_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None or not isinstance(execution_id, str):
            raise ValueError(cursor)
        # Only what list_executions issues: an instant the database stores and an id.
        if not MIN_DATETIME <= created_at.astimezone(UTC) < MAX_DATETIME:
            raise ValueError(cursor)
        if _CURSOR_ID.fullmatch(execution_id) is None:
            raise ValueError(cursor)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(
            "is not a cursor returned by list_executions", field="cursor"
        ) from None
    return created_at, execution_id


#: An audit cursor's text: the decimal id of the last entry of a page, 1-19 digits.
_AUDIT_CURSOR = re.compile(r"a([1-9][0-9]{0,18})", re.ASCII)


def encode_audit_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{entry_id}".encode()).decode().rstrip("=")


def decode_audit_cursor(cursor: str) -> int:
    """The id an audit cursor holds (only what ``list_audit`` issues)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode("ascii")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        text = ""
    found = _AUDIT_CURSOR.fullmatch(text)
    if found is None or int(found.group(1)) >= 2**63:
        raise InvalidInputError("is not a cursor returned by list_audit", field="cursor")
    return int(found.group(1))
