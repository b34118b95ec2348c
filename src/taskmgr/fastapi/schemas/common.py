"""What the HTTP models share: the instant format, text and key patterns, JSON
arguments, JSON Schema helpers, and the request and response base classes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
)
from pydantic.config import JsonDict
from pydantic.config import JsonValue as JsonValue_
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from typing_extensions import TypeAliasType

from taskmgr.core.triggers import MAX_DATETIME, MIN_DATETIME

__all__ = [
    "DATETIME_PATTERN",
    "JOB_KEY_REGEX",
    "MAX_RETENTION_DAYS",
    "TEXT_PATTERN",
    "TIMEZONE_PATTERN",
    "InModel",
    "Instant",
    "JsonValue",
    "Kwargs",
    "OutModel",
    "at_most_one",
    "clamp_instant",
    "parse_instant",
    "seconds_schema",
]

#: A century: more is a mistake, and timedelta cannot hold much more.
MAX_RETENTION_DAYS = 36_500
#: The job key pattern (``taskmgr.core.validation.JOB_KEY_PATTERN``) for OpenAPI clients.
JOB_KEY_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

#: An instant as the API takes it: RFC 3339 (ISO 8601 with seconds and an offset),
#: in the years 1970-9998 (what the database stores). Numbers are refused.
DATETIME_PATTERN = (
    r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_DATETIME = re.compile(DATETIME_PATTERN, re.ASCII)
#: The last instant a filter may name (MAX_DATETIME itself is out of range).
_LAST_INSTANT = MAX_DATETIME - timedelta(microseconds=1)


def parse_instant(value: object) -> datetime:
    """``value`` (a string matching :data:`DATETIME_PATTERN`) as an aware datetime.

    Anything else, a number (a Unix time) or a naive or malformed string included,
    raises a pydantic error (a 422 ``validation_error``)."""
    if isinstance(value, datetime):
        return value  # built in Python (a default, a test): already a datetime
    if not isinstance(value, str) or _DATETIME.fullmatch(value) is None:
        raise PydanticCustomError(
            "datetime_format",
            "must be an RFC 3339 date-time with an offset, e.g. 2026-01-02T03:04:05Z, "
            "in the years 1970-9998",
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        raise PydanticCustomError(
            "datetime_format", "not a valid date-time (day, hour or offset out of range)"
        ) from None


#: A strict instant in a request body: ``"2026-01-02T03:04:05+01:00"``, never a number.
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(parse_instant),
    Field(json_schema_extra={"pattern": DATETIME_PATTERN}),
]


#: Text the API stores: no NUL (the body pre-scan refuses it anywhere, 422 invalid_string).
TEXT_PATTERN = r"^[^\x00]*$"
#: An IANA time zone name, as ``taskmgr.core.validation.validate_timezone`` checks it.
TIMEZONE_PATTERN = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"


class _KeysNamed:
    """In the JSON Schema, an object's key pattern as ``propertyNames`` (pydantic writes
    ``patternProperties``, which lets other keys through as additional properties)."""

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core)
        target = handler.resolve_ref_schema(schema)
        patterns = target.pop("patternProperties", None)
        if patterns:
            [(pattern, values)] = patterns.items()
            target["propertyNames"] = {"pattern": pattern}
            target["additionalProperties"] = values
        return schema


_Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
#: Any JSON value whose strings (keys included) have no NUL: what ``kwargs`` take.
JsonValue = TypeAliasType(
    "JsonValue",
    "bool | int | float | _Text | list[JsonValue] | "
    "Annotated[dict[_Text, JsonValue], _KeysNamed()] | None",
)
#: Keyword arguments: a JSON object (at most 64 KiB serialized and 32 levels deep,
#: which a schema cannot say; the core checks them, 422 invalid_kwargs / json_too_deep).
Kwargs = Annotated[dict[_Text, JsonValue], _KeysNamed()]


def seconds_schema(minimum: float, maximum: float, *, exclusive: bool = False) -> JsonDict:
    """The JSON Schema of a number of seconds the core bounds (its own 422 code)."""
    low = {"exclusiveMinimum": minimum} if exclusive else {"minimum": minimum}
    return {**low, "maximum": maximum}


def at_most_one(*names: str) -> list[JsonValue_]:
    """JSON Schema: no two of these fields are given with a value (null is no value)."""
    return [
        {
            "not": {
                "required": [first, second],
                "properties": {first: {"not": {"type": "null"}}, second: {"not": {"type": "null"}}},
            }
        }
        for i, first in enumerate(names)
        for second in names[i + 1 :]
    ]


def clamp_instant(value: datetime) -> datetime:
    """``value`` in UTC, moved into what the database stores: a bound of a filter in
    the year 1970 or 9998 of its offset may fall just outside (1969 or 9999 in UTC),
    where no row is, so the filter keeps its meaning."""
    moment = value.astimezone(UTC)
    return min(max(moment, MIN_DATETIME), _LAST_INSTANT)


class InModel(BaseModel):
    """A request body."""

    # Unknown fields are refused: no mass assignment of id, version, timestamps...
    # Strict: "10" is not a number and "yes" is not true (JSON has types; use them).
    model_config = ConfigDict(extra="forbid", strict=True)


class OutModel(BaseModel):
    """A response body: frozen, and only its declared fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
