"""Parse and validate 5-field cron expressions as crontab(5) defines them.

Pure Python and engine-agnostic: :func:`parse_cron` returns the set of values
each field allows plus the two facts the engine needs beyond the sets, whether
day-of-month and day-of-week are *restricted* (crontab(5): the field does not
start with ``*``; both restricted means a day matches if either matches) and
whether the job is *fixed-time* (no ``*`` anywhere in the minute and hour fields,
which selects the Vixie DST rule: ``docs/guarantees.md``, G5). Every refusal is an
:class:`~taskmgr.exceptions.InvalidCronError` naming the field and the allowed range.
See ``docs/cron.md`` for the accepted syntax and the DST rule.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import re
from dataclasses import dataclass

from taskmgr.exceptions import InvalidCronError

__all__ = ["MACROS", "MAX_EXPRESSION_LENGTH", "MAX_ITEMS_PER_FIELD", "CronExpr", "parse_cron"]

MAX_EXPRESSION_LENGTH = 256
MAX_ITEMS_PER_FIELD = 60

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]
    size: int
    """How many distinct values the field has: the largest step it takes."""
    cycle: str
    """The period the field's values repeat in, for messages."""


_FIELDS = (
    _Field("minute", 0, 59, {}, 60, "hour"),
    _Field("hour", 0, 23, {}, 24, "day"),
    _Field("day_of_month", 1, 31, {}, 31, "month"),
    _Field("month", 1, 12, _MONTHS, 12, "year"),
    # 7 is Sunday too (crontab(5)); it is folded onto 0 after parsing.
    _Field("day_of_week", 0, 7, _WEEKDAYS, 7, "week"),
)

_SEPARATORS = re.compile(r"[ \t]+")
_ATOM = re.compile(r"[0-9]+|[A-Za-z]+", re.ASCII)
# Quartz/Spring extensions that other tools accept and crontab(5) does not. 'L' and
# 'W' are letters of month and weekday names too, so they are recognised per atom.
_UNSUPPORTED_CHARS = {"#": "'#' (nth weekday)", "?": "'?' (no specific value)"}
_LAST_OR_WEEKDAY = re.compile(r"LW?|[0-9]+[LW]|[A-Z]{3}L", re.ASCII)


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A validated cron expression.

    Weekdays use crontab numbering, 0 = Sunday (7 already folded onto 0).
    """

    expression: str
    """The expression with whitespace normalised (macros lower-cased, kept as written)."""
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool
    fixed_time: bool


def _fail(field: str, message: str, expression: str) -> InvalidCronError:
    return InvalidCronError(f"{message} in {expression!r}", field=f"cron.{field}")


def _value(atom: str, field: _Field, expression: str) -> int:
    if atom.isdigit():
        value = int(atom)
        if not field.low <= value <= field.high:
            raise _fail(
                field.name,
                f"value {atom} out of range {field.low}-{field.high}",
                expression,
            )
        return value
    value_of_name = field.names.get(atom.lower())
    if value_of_name is None:
        allowed = f"{field.low}-{field.high}"
        if field.names:
            names = tuple(field.names)
            first, last = names[0], names[-1]
            allowed += f" or {first.upper()}-{last.upper()}"
        raise _fail(field.name, f"{atom!r} is not a value (allowed: {allowed})", expression)
    return value_of_name


def _atom(text: str, field: _Field, expression: str, item: str) -> int:
    if _LAST_OR_WEEKDAY.fullmatch(text.upper()) and text.lower() not in field.names:
        raise _fail(
            field.name,
            f"{item!r}: 'L' (last) and 'W' (nearest weekday) are not supported "
            "(standard 5-field crontab(5) syntax only)",
            expression,
        )
    if _ATOM.fullmatch(text) is None:
        raise _fail(field.name, f"malformed item {item!r}", expression)
    return _value(text, field, expression)


def _parse_item(item: str, field: _Field, expression: str) -> set[int]:
    if not item:
        raise _fail(field.name, "empty list item (stray ',')", expression)
    range_part, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit():
            raise _fail(field.name, f"step in {item!r} must be a number", expression)
        step = int(step_text)
    if range_part == "*":
        low, high = field.low, field.high
        if field.name == "day_of_week":
            high = 6  # '*' means every day once; 7 would only duplicate Sunday
    elif "-" in range_part:
        first, _, last = range_part.partition("-")
        if not first or not last:
            raise _fail(field.name, f"malformed range {item!r}", expression)
        low = _atom(first, field, expression, item)
        high = _atom(last, field, expression, item)
        if low > high:
            raise _fail(
                field.name,
                f"reversed range {range_part!r}: the start must not exceed the end "
                "(ranges do not wrap around)",
                expression,
            )
    else:
        low = high = _atom(range_part, field, expression, item)
        if slash:
            # Vixie cron refuses 'a/n'; cronie and APScheduler read it as 'a-max/n'.
            raise _fail(
                field.name,
                f"step after a single value {item!r} is ambiguous; "
                f"write '{range_part}-{field.high}/{step_text}' or '*/{step_text}'",
                expression,
            )
    # A step is checked against the field, not the range: '55-56/2' is minute 55, as
    # in Vixie cron and cronie (a step past the range's end adds no further value).
    # They refuse only 0; a step beyond the field's size is refused here because it
    # can only mean "every n" across the field's wrap, which cron cannot do ('*/90'
    # would fire hourly). docs/cron.md, Steps.
    if slash and not 1 <= step <= field.size:
        why = f" (steps do not carry over from one {field.cycle} to the next)" if step else ""
        raise _fail(
            field.name, f"step {step} in {item!r} out of range 1-{field.size}{why}", expression
        )
    return set(range(low, high + 1, step))


def _parse_field(text: str, field: _Field, expression: str) -> frozenset[int]:
    items = text.split(",")
    if len(items) > MAX_ITEMS_PER_FIELD:
        raise _fail(
            field.name,
            f"{len(items)} list items, at most {MAX_ITEMS_PER_FIELD} allowed",
            expression,
        )
    values: set[int] = set()
    for item in items:
        values |= _parse_item(item, field, expression)
    if field.name == "day_of_week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _check_characters(expression: str) -> None:
    for position, char in enumerate(expression):
        if not char.isascii():
            raise InvalidCronError(
                f"non-ASCII character {char!r} (U+{ord(char):04X}) at position {position} "
                f"in {expression!r}; only ASCII digits, names, '*', ',', '-' and '/' are allowed",
                field="cron",
            )
        if not char.isprintable() and char != "\t":
            raise InvalidCronError(
                f"control character {char!r} at position {position} in {expression!r}; "
                "an expression is one line of fields separated by spaces",
                field="cron",
            )
    for marker, what in _UNSUPPORTED_CHARS.items():
        if marker in expression:
            raise InvalidCronError(
                f"{what} is not supported (standard 5-field crontab(5) syntax only) "
                f"in {expression!r}",
                field="cron",
            )


def fires_ever(months: frozenset[int], doms: frozenset[int], dom_or_dow: bool) -> bool:
    if dom_or_dow:
        return True  # every month has every weekday, so the weekday half always fires
    # Otherwise a fire needs a real date; any real date eventually falls on every
    # weekday (Feb 29 included, over 28 years), so the weekday set cannot block it.
    longest = {month: calendar.monthrange(2000, month)[1] for month in months}  # leap year
    return any(day <= longest[month] for month in months for day in doms)


def parse_cron(expression: object) -> CronExpr:
    """Validate ``expression`` and return its parsed form (cached).

    Raises :class:`InvalidCronError` (``field`` is ``"cron"`` or ``"cron.<field>"``).
    """
    if not isinstance(expression, str):
        raise InvalidCronError(f"must be a string, got {type(expression).__name__}", field="cron")
    return _parse(expression)


@functools.lru_cache(maxsize=4096)
def _parse(expression: str) -> CronExpr:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidCronError(
            f"expression is {len(expression)} characters long, "
            f"at most {MAX_EXPRESSION_LENGTH} allowed",
            field="cron",
        )
    _check_characters(expression)
    normalised = " ".join(_SEPARATORS.split(expression.strip(" \t")))
    if normalised.startswith("@"):
        macro = normalised.lower()
        if macro == "@reboot":
            raise InvalidCronError(
                "'@reboot' is not a schedule (it means 'when cron starts'); "
                "run the job from your application's start-up instead",
                field="cron",
            )
        if macro not in MACROS:
            raise InvalidCronError(
                f"unknown macro {normalised!r} (allowed: {', '.join(MACROS)})", field="cron"
            )
        return dataclasses.replace(_parse(MACROS[macro]), expression=macro)
    texts = normalised.split(" ") if normalised else []
    if len(texts) != 5:
        extra = " (6- and 7-field forms with seconds or years are not supported)"
        raise InvalidCronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got "
            f"{len(texts)} in {expression!r}{extra if len(texts) in (6, 7) else ''}",
            field="cron",
        )
    minutes, hours, doms, months, dows = (
        _parse_field(text, field, expression) for text, field in zip(texts, _FIELDS, strict=True)
    )
    dom_restricted = not texts[2].startswith("*")
    dow_restricted = not texts[4].startswith("*")
    if not fires_ever(months, doms, dom_restricted and dow_restricted):
        raise InvalidCronError(
            f"{expression!r} never fires: no month among the allowed months has any of "
            "the allowed days of the month",
            field="cron",
        )
    return CronExpr(
        expression=normalised,
        minutes=minutes,
        hours=hours,
        days_of_month=doms,
        months=months,
        days_of_week=dows,
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
        fixed_time="*" not in texts[0] and "*" not in texts[1],
    )
