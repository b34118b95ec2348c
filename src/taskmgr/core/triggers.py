"""Trigger specs: when a job fires.

Three frozen pydantic models, stored as JSON in the job row and told apart by
``type``: :class:`Cron` (a crontab(5) expression in an IANA time zone),
:class:`Interval` (every fixed duration from a persisted anchor) and :class:`Date`
(once). Each one answers :meth:`next_fire_times` with aware UTC datetimes.

Bad input raises the specific :class:`~taskmgr.exceptions.InvalidTriggerError`
subclass, from the constructors and from :func:`parse_trigger` alike; inside a
larger pydantic model the same errors arrive wrapped in a ``ValidationError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)

from taskmgr.core.cron import parse_cron
from taskmgr.core.engine import cron_fire_times
from taskmgr.core.validation import ensure_aware, reraise_validation, validate_timezone
from taskmgr.exceptions import InvalidDatetimeError, InvalidIntervalError, InvalidTriggerError

__all__ = ["Cron", "Date", "Interval", "Manual", "TriggerSpec", "parse_trigger"]

MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=366)
# Datetimes stay clear of datetime.min/max so that time zone conversions and a
# day of arithmetic never overflow; APScheduler's calendar starts in 1970 too.
MIN_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(9999, 1, 1, tzinfo=UTC)


def _check_after(after: datetime) -> datetime:
    if not isinstance(after, datetime) or after.tzinfo is None or after.utcoffset() is None:
        ensure_aware(after, "after")  # raises with the right message
    return after


def utc_instant(
    value: object, field: str, parse: Callable[[str], Any] = datetime.fromisoformat
) -> datetime:
    """An aware datetime (or an ISO 8601 string, read by ``parse``) normalised to UTC,
    within 1970-9998."""
    if isinstance(value, str):
        text = value
        try:
            value = parse(text)
        except ValueError:  # pydantic's ValidationError is one too
            raise InvalidDatetimeError(
                f"{text[:40]!r} is not an ISO 8601 datetime", field=field
            ) from None
    moment = ensure_aware(value, field)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = MAX_DATETIME
    if not MIN_DATETIME <= moment < MAX_DATETIME:
        raise InvalidDatetimeError(
            f"{value} out of range: the year must be 1970-9998 (UTC)", field=field
        )
    return moment


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def next_fire_times(self, after: datetime, n: int = 1) -> list[datetime]:
        """The next ``n`` fire times strictly after ``after`` (aware), increasing, in UTC.

        Fewer than ``n`` (possibly none) when the trigger has no more; ``n <= 0``
        gives ``[]``. A naive ``after`` raises :class:`InvalidDatetimeError`.
        """
        raise NotImplementedError

    def _construct(self, kind: str, field: str, value: object, data: dict[str, Any]) -> None:
        """``Spec(value, **data)``: the positional argument becomes ``field``, and a
        failure raises our own error (never pydantic's) with fields under ``kind``."""
        if value is not None:
            data[field] = value
        try:
            super().__init__(**data)
        except ValidationError as exc:
            reraise_validation(exc, error_class=InvalidTriggerError, prefix=kind)


class Cron(_Spec):
    """A crontab(5) expression evaluated in an IANA time zone (see ``docs/cron.md``)."""

    type: Literal["cron"] = "cron"
    expression: str
    timezone: str = "UTC"

    def __init__(self, expression: str | None = None, /, **data: Any) -> None:
        self._construct("cron", "expression", expression, data)

    @field_validator("expression", mode="before")
    @classmethod
    def _check_expression(cls, value: object) -> str:
        return parse_cron(value).expression

    @field_validator("timezone", mode="before")
    @classmethod
    def _check_timezone(cls, value: object) -> str:
        return validate_timezone(value)

    def next_fire_times(self, after: datetime, n: int = 1) -> list[datetime]:
        return cron_fire_times(self.expression, self.timezone, _check_after(after), n)


class Interval(_Spec):
    """Every ``every`` (a timedelta, or seconds), at ``start + k * every``.

    ``every`` is 1 second to 366 days. With no ``start`` the anchor is the ``after``
    of each call, so a service persists one with :meth:`anchored` when it stores the job.
    In JSON ``every`` is a number of seconds.
    """

    type: Literal["interval"] = "interval"
    every: timedelta
    start: datetime | None = None

    def __init__(self, every: timedelta | float | None = None, /, **data: Any) -> None:
        self._construct("interval", "every", every, data)

    @field_validator("every", mode="before")
    @classmethod
    def _check_every(cls, value: object) -> timedelta:
        allowed = "allowed: 1 second to 366 days"
        if isinstance(value, timedelta):
            every = timedelta(value.days, value.seconds, value.microseconds)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            # No float() of an int here: a huge int would overflow instead of failing cleanly.
            finite = not isinstance(value, float) or math.isfinite(value)
            if not (finite and 1 <= value <= MAX_INTERVAL.total_seconds()):
                raise InvalidIntervalError(
                    f"{value!r:.40} seconds out of range ({allowed})", field="interval"
                )
            every = timedelta(seconds=value)
        else:
            raise InvalidIntervalError(
                f"must be a timedelta or a number of seconds, got {type(value).__name__}",
                field="interval",
            )
        if not MIN_INTERVAL <= every <= MAX_INTERVAL:
            raise InvalidIntervalError(
                f"{every.total_seconds()!r} seconds out of range ({allowed})", field="interval"
            )
        return every

    @field_validator("start", mode="wrap")
    @classmethod
    def _check_start(cls, value: object, handler: ValidatorFunctionWrapHandler) -> datetime | None:
        return None if value is None else utc_instant(value, "interval.start", handler)

    @field_serializer("every", when_used="json")
    def _every_seconds(self, every: timedelta) -> int | float:
        seconds = every.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds

    def anchored(self, now: datetime) -> Interval:
        """This interval anchored at ``now`` if it has no ``start`` yet, else itself."""
        return self if self.start is not None else Interval(self.every, start=now)

    def next_fire_times(self, after: datetime, n: int = 1) -> list[datetime]:
        after = _check_after(after).astimezone(UTC)
        every = self.every
        start = after if self.start is None else self.start
        fires: list[datetime] = []
        try:
            # Exact integer arithmetic on timedeltas, in UTC: local-time arithmetic
            # would drift by an hour across DST.
            first = start if after < start else start + ((after - start) // every + 1) * every
            for index in range(n):
                fires.append(first + index * every)
        except OverflowError:  # past year 9999
            pass
        return fires


class Date(_Spec):
    """Once, at ``at`` (aware; kept in UTC; year 1970-9998)."""

    type: Literal["date"] = "date"
    at: datetime

    def __init__(self, at: datetime | None = None, /, **data: Any) -> None:
        self._construct("date", "at", at, data)

    @field_validator("at", mode="wrap")
    @classmethod
    def _check_at(cls, value: object, handler: ValidatorFunctionWrapHandler) -> datetime:
        return utc_instant(value, "date.at", handler)

    def next_fire_times(self, after: datetime, n: int = 1) -> list[datetime]:
        return [self.at] if n > 0 and self.at > _check_after(after) else []


class Manual(_Spec):
    """No schedule: the job runs only when it is deferred or run by hand (a task)."""

    type: Literal["manual"] = "manual"

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            reraise_validation(exc, error_class=InvalidTriggerError, prefix="manual")

    def next_fire_times(self, after: datetime, n: int = 1) -> list[datetime]:
        _check_after(after)
        return []


TriggerSpec = Annotated[Cron | Interval | Date | Manual, Field(discriminator="type")]

_ADAPTER: TypeAdapter[Cron | Interval | Date | Manual] = TypeAdapter(TriggerSpec)
_TYPES = ("cron", "interval", "date", "manual")


def parse_trigger(data: Any) -> Cron | Interval | Date | Manual:
    """Build a trigger spec from its JSON form (``spec.model_dump(mode="json")``).

    A spec instance is returned as it is. Raises an :class:`InvalidTriggerError`
    subclass for anything else that is not a valid spec.
    """
    if isinstance(data, Cron | Interval | Date | Manual):
        return data
    if not isinstance(data, Mapping):
        raise InvalidTriggerError(
            f"must be an object with a 'type' of 'cron', 'interval', 'date' or 'manual', "
            f"got {type(data).__name__}",
            field="trigger",
        )
    kind = data.get("type")
    if kind not in _TYPES:
        shown = repr(kind)[:40] if "type" in data else "nothing"
        raise InvalidTriggerError(
            f"must be 'cron', 'interval', 'date' or 'manual', got {shown}", field="type"
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        reraise_validation(exc, error_class=InvalidTriggerError)
