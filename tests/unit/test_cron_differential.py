"""taskmgr's cron parser and fire times against cronsim, an independent implementation.

cronsim follows Debian's Vixie cron: 0 and 7 are Sunday, and the day-of-month and
day-of-week fields OR when neither starts with ``*``, as in crontab(5) and
docs/cron.md. Generated here is the grammar both implement: numbers, month and
weekday names (any case, in ranges too), ranges, steps (including steps larger
than their range), lists, ``*`` and ``*/n``, with the day fields restricted or not.
Left out: cronsim's extensions (``L``, ``W``, ``#``, a seconds field) and taskmgr's
macros (``@daily``), which the other side lacks.

Two documented differences (docs/cron.md, Steps) are compared as such: cronsim
accepts ``a/n`` (as ``a-max/n``) and a step larger than the whole field (``*/90``:
minute 0 only); taskmgr refuses both.

Fire times are compared in UTC and in Asia/Tokyo, which has had no DST since 1951:
under DST the two libraries apply different (each documented) rules.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmgr.core.triggers import Cron
from taskmgr.exceptions import InvalidCronError

N_FIRES = 6
ZONES = {"UTC": UTC, "Asia/Tokyo": ZoneInfo("Asia/Tokyo")}
# cronsim gives up on an expression that does not fire for 50 years.
CRONSIM_HORIZON_YEARS = 50

# Fixed so the test never flakes: the same examples on every run. No deadline, as a
# loaded CI machine can take longer than Hypothesis' 200 ms on one example.
PROFILE = settings(max_examples=200, derandomize=True, database=None, deadline=None)

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@dataclass(frozen=True)
class _Field:
    low: int
    high: int
    size: int  # the largest step taskmgr takes
    names: list[str]  # names[value - low]
    foreign: list[str]  # names of another field: invalid here


FIELDS = (
    _Field(0, 59, 60, [], ["JAN", "MON"]),
    _Field(0, 23, 24, [], ["FEB", "TUE"]),
    _Field(1, 31, 31, [], ["MAR", "WED"]),
    _Field(1, 12, 12, _MONTHS, ["THU", "SUN"]),
    _Field(0, 7, 7, _WEEKDAYS, ["APR", "DEC"]),  # 7 is Sunday too
)

# An item's kind: both must accept it, both must refuse it, or taskmgr alone refuses it
# (the documented differences).
OK, BAD, TASKMGR_REFUSES = "ok", "bad", "taskmgr refuses"


@st.composite
def _value(draw: st.DrawFn, field: _Field, low: int | None = None) -> tuple[int, str]:
    value = draw(st.integers(low if low is not None else field.low, field.high))
    index = value - field.low
    if index < len(field.names) and draw(st.booleans()):
        name = field.names[index]
        return value, draw(st.sampled_from([name, name.lower(), name.capitalize()]))
    if value < 10 and draw(st.integers(0, 9)) == 0:
        return value, f"0{value}"  # a leading zero
    return value, str(value)


@st.composite
def _valid_item(draw: st.DrawFn, field: _Field) -> str:
    step = draw(st.integers(1, field.size))
    shape = draw(st.sampled_from(["*", "*/n", "a", "a-b", "a-b/n", "a-b/n"]))
    if shape == "*":
        return "*"
    if shape == "*/n":
        return f"*/{step}"
    first, first_text = draw(_value(field))
    if shape == "a":
        return first_text
    last, last_text = draw(_value(field, low=first))
    if shape == "a-b":
        return f"{first_text}-{last_text}"
    # Half of the time a step past the range's end ('55-56/2'), as far as the field allows.
    if draw(st.booleans()):
        step = draw(st.integers(min(last - first + 1, field.size), field.size))
    return f"{first_text}-{last_text}/{step}"


@st.composite
def _any_item(draw: st.DrawFn, field: _Field) -> tuple[str, str]:
    kind = draw(st.sampled_from([OK, OK, OK, OK, BAD, TASKMGR_REFUSES]))
    if kind == OK:
        return kind, draw(_valid_item(field))
    if kind == TASKMGR_REFUSES:
        if draw(st.booleans()):
            return kind, f"{draw(_value(field))[1]}/{draw(st.integers(1, field.size))}"  # a/n
        big = draw(st.integers(field.size + 1, field.size + 40))
        first, first_text = draw(_value(field))
        _, last_text = draw(_value(field, low=first))
        return kind, draw(st.sampled_from([f"*/{big}", f"{first_text}-{last_text}/{big}"]))
    out_of_range = [str(field.high + draw(st.integers(1, 5)))]
    if field.low > 0:
        out_of_range.append(str(field.low - 1))
    low, high = sorted(
        draw(st.lists(st.integers(field.low, field.high), min_size=2, max_size=2, unique=True))
    )
    bad = [
        *out_of_range,
        f"{field.low}-{out_of_range[0]}",
        f"{high}-{low}",  # reversed
        "*/0",
        f"{low}-{high}/0",
        *field.foreign,
        "",  # a stray comma
        f"{low}-",
        "*/",
        f"{low}x",
    ]
    return kind, draw(st.sampled_from(bad))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """Expressions of the shared grammar that both implementations accept."""
    fields = [
        ",".join(draw(st.lists(_valid_item(field), min_size=1, max_size=3))) for field in FIELDS
    ]
    return " ".join(fields)


@st.composite
def tagged_expressions(draw: st.DrawFn) -> tuple[str, set[str]]:
    """Any expression, with the kinds of the items it holds."""
    fields, kinds = [], set()
    for field in FIELDS:
        items = draw(st.lists(_any_item(field), min_size=1, max_size=3))
        kinds.update(kind for kind, _ in items)
        fields.append(",".join(text for _, text in items))
    return " ".join(fields), kinds


starts = st.builds(
    lambda moment, whole_minute: (
        moment.replace(second=0, microsecond=0) if whole_minute else moment
    ),
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2090, 12, 31),
        timezones=st.just(UTC),
    ),
    st.booleans(),
)


def taskmgr_accepts(expression: str) -> bool:
    try:
        Cron(expression)
    except InvalidCronError:
        return False
    return True


def cronsim_accepts(expression: str) -> bool:
    try:
        CronSim(expression, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


def cronsim_fires(expression: str, zone: str, after: datetime, n: int) -> list[datetime]:
    found = itertools.islice(CronSim(expression, after.astimezone(ZONES[zone])), n)
    return [fire.astimezone(UTC) for fire in found]


@PROFILE
@given(tagged_expressions())
def test_both_accept_and_refuse_the_same_expressions(case: tuple[str, set[str]]) -> None:
    expression, kinds = case
    ours, theirs = taskmgr_accepts(expression), cronsim_accepts(expression)
    if BAD in kinds:
        assert (ours, theirs) == (False, False), expression
    elif TASKMGR_REFUSES in kinds:
        assert not ours, expression
    else:
        # Both refuse expressions that never fire (a day no allowed month has).
        assert ours == theirs, expression


@PROFILE
@given(expressions(), starts, st.sampled_from(sorted(ZONES)))
def test_same_fire_times(expression: str, after: datetime, zone: str) -> None:
    ours_ok, theirs_ok = taskmgr_accepts(expression), cronsim_accepts(expression)
    assert ours_ok == theirs_ok, expression
    if not ours_ok:
        return  # never fires ('0 0 31 2 *'): both refuse it
    ours = Cron(expression, timezone=zone).next_fire_times(after, N_FIRES)
    theirs = cronsim_fires(expression, zone, after, N_FIRES)
    assert ours[: len(theirs)] == theirs, expression
    if len(theirs) < N_FIRES:
        # cronsim stopped looking (rare: 29 February on one weekday); taskmgr's next
        # fire must then lie beyond cronsim's horizon.
        last = theirs[-1] if theirs else after
        assert ours[len(theirs)].year > last.year + CRONSIM_HORIZON_YEARS - 1, expression


@pytest.mark.parametrize(
    "expression",
    [
        "55-56/2 * * * *",
        "0 12-23/12 * * *",
        "0 0 18-23/6 * *",
        "0 0 * * 0-6/7",
        "0 0 * * 6-7/7",
        "*/60 */24 */31 */12 */7",
        "0 0 1 * MON",  # both restricted: OR
        "0 0 */2 * MON",  # '*/2' is not restricted: AND
        "0 0 31 2 MON",  # the Mondays of February
        "0 0 29 2 */7",  # 29 February on a Sunday
        "0 0 1-7 * 7",
        "0 9 * jan-mar/2 mon-fri",
    ],
)
@pytest.mark.parametrize("zone", sorted(ZONES))
def test_same_fire_times_examples(expression: str, zone: str) -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
    ours = Cron(expression, timezone=zone).next_fire_times(after, N_FIRES)
    assert ours == cronsim_fires(expression, zone, after, N_FIRES)


@pytest.mark.parametrize(
    ("expression", "accepted"),
    [
        ("0 0 29 2 *", True),  # leap years
        ("0 0 31 2 MON", True),  # OR: the Mondays of February
        ("0 0 30 2 *", False),  # never fires
        ("0 0 31 4,6,9,11 *", False),
        ("0 0 30-31 FEB *", False),
        ("0 0 31 2 */7", False),  # '*/7' is not restricted: AND, so never
        ("0 0 * * 0-8", False),
        ("0 0 * * 5-MON", False),
        ("0 0 * jan-DEC/0 *", False),
        ("0 0 * * JAN", False),
    ],
)
def test_same_acceptance_examples(expression: str, accepted: bool) -> None:
    assert taskmgr_accepts(expression) is accepted
    assert cronsim_accepts(expression) is accepted


@pytest.mark.parametrize(
    "expression", ["5/15 * * * *", "*/61 * * * *", "0 */25 * * *", "0 0 * * */8"]
)
def test_documented_differences(expression: str) -> None:
    # docs/cron.md, Steps: cronsim (like Vixie cron for the steps) accepts these.
    assert cronsim_accepts(expression)
    assert not taskmgr_accepts(expression)
