"""``FakeClock`` takes a time in the same forms everywhere (constructor and ``set``),
and a step in the same forms (``advance``); ``make_test_service`` is isolated from
the ``TASKMGR_*`` environment's dispatcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from taskmgr import InlineDispatcher, InvalidDatetimeError
from taskmgr.testing import FakeClock, make_test_service

NINE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SAME_INSTANT = [
    pytest.param(NINE, id="aware-utc"),
    pytest.param(datetime(2026, 1, 5, 10, 0, tzinfo=timezone(timedelta(hours=1))), id="aware+1"),
    pytest.param("2026-01-05T09:00:00+00:00", id="iso-offset"),
    pytest.param("2026-01-05T09:00:00Z", id="iso-z"),
    pytest.param("2026-01-05T04:00:00-05:00", id="iso-5"),
]


@pytest.mark.parametrize("when", SAME_INSTANT)
def test_the_constructor_and_set_take_the_same_forms(when: datetime | str) -> None:
    assert FakeClock(when).now() == NINE
    clock = FakeClock()
    assert clock.set(when) == NINE
    assert clock.now() == NINE
    assert clock.now().tzinfo is UTC


@pytest.mark.parametrize(
    "bad",
    [datetime(2026, 1, 5, 9, 0), "2026-01-05T09:00:00", "next tuesday", 1767603600],
    ids=["naive", "iso-naive", "prose", "number"],
)
def test_a_time_without_zone_or_not_a_time_is_refused_alike(bad: object) -> None:
    with pytest.raises(InvalidDatetimeError):
        FakeClock(bad)  # type: ignore[arg-type]
    clock = FakeClock(NINE)
    with pytest.raises(InvalidDatetimeError):
        clock.set(bad)  # type: ignore[arg-type]
    assert clock.now() == NINE  # a refused set() moves nothing


def test_set_moves_back_too() -> None:
    clock = FakeClock(NINE)
    assert clock.set("2025-12-31T23:00:00Z") == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "units", "moved"),
    [
        ((90,), {}, timedelta(seconds=90)),
        ((1.5,), {}, timedelta(seconds=1.5)),
        ((timedelta(hours=1),), {}, timedelta(hours=1)),
        ((), {"minutes": 5}, timedelta(minutes=5)),
        ((timedelta(hours=1),), {"minutes": 30}, timedelta(hours=1, minutes=30)),
        ((30,), {"days": 1}, timedelta(days=1, seconds=30)),
        ((), {}, timedelta(0)),
    ],
)
def test_advance_takes_seconds_a_timedelta_and_keywords(
    args: tuple[object, ...], units: dict[str, float], moved: timedelta
) -> None:
    clock = FakeClock(NINE)
    assert clock.advance(*args, **units) == NINE + moved  # type: ignore[arg-type]
    assert clock.now() == NINE + moved


@pytest.mark.parametrize(
    ("args", "units", "error"),
    [
        ((-1,), {}, ValueError),
        ((timedelta(seconds=-1),), {}, ValueError),
        ((), {"minutes": -1}, ValueError),
        ((True,), {}, TypeError),
        (("60",), {}, TypeError),
    ],
)
def test_advance_refuses_steps_back_and_non_durations(
    args: tuple[object, ...], units: dict[str, float], error: type[Exception]
) -> None:
    clock = FakeClock(NINE)
    with pytest.raises(error):
        clock.advance(*args, **units)  # type: ignore[arg-type]
    assert clock.now() == NINE


def test_the_test_service_runs_jobs_here_whatever_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKMGR_DISPATCHER", "celery")
    monkeypatch.setenv("TASKMGR_CELERY_APP", "no_such_module:app")
    service = make_test_service()
    assert isinstance(service.dispatcher, InlineDispatcher)
