"""Outcome text a database would refuse (NUL, lone surrogates, over-long names) is
cleaned before it is written, and a write the database refuses for its data is never
retried whole forever: the other outcomes of the batch are stored, the bad one ends
``failed`` with a placeholder. On every backend; PostgreSQL refuses NUL in text."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from taskmgr import ExecutionStatus, SchedulerService, task
from taskmgr.execution.run import MAX_ERROR_CHARS, storable_text
from taskmgr.storage import Storage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
LONG_NAME = "E" * 300


def hostile_error(kind: str) -> Exception:
    if kind == "nul":
        return ValueError("a\x00b")
    if kind == "surrogate":
        return ValueError("half a pair: \ud800!")
    if kind == "long-name":
        return type(LONG_NAME, (Exception,), {})("a class with a very long name")
    return ValueError("x" * (MAX_ERROR_CHARS * 3))


@task("hostile.raise")
def raise_hostile(kind: str) -> None:
    raise hostile_error(kind)


@task("hostile.result")
def hostile_result(kind: str) -> Any:
    return {"text": "nul \x00 here", "pair": "\udc00", "nested": ["ok", "\x00"]}


@task("hostile.fine")
def fine(n: int) -> int:
    return n


@pytest.fixture
def service(storage: Storage, caplog: pytest.LogCaptureFixture) -> SchedulerService:
    # the failures are logged with their raw text (lone surrogates included), which
    # a test report cannot carry across processes: keep them out of the captured log
    caplog.set_level(logging.CRITICAL + 1, logger="taskmgr")
    with make_test_service(
        [raise_hostile, hostile_result, fine], clock=FakeClock(START), storage=storage
    ) as svc:
        yield svc


def test_hostile_text_is_stored_cleaned_and_the_batch_is_not_held_up(
    service: SchedulerService,
) -> None:
    kinds = ["nul", "surrogate", "long-name", "huge"]
    bad = service.defer_many("hostile.raise", [{"kind": k} for k in kinds])
    result = service.defer("hostile.result", kind="all")
    good = service.defer_many("hostile.fine", [{"n": n} for n in range(5)])
    ended = {e.id: e for e in service.run_due(timeout=20)}
    assert set(ended) == {e.id for e in [*bad, result, *good]}

    for execution in good:
        assert ended[execution.id].status is ExecutionStatus.SUCCESS
    nul, surrogate, long_name, huge = (ended[e.id] for e in bad)
    assert {e.status for e in (nul, surrogate, long_name, huge)} == {ExecutionStatus.FAILED}
    assert nul.error_message == "a\ufffdb"
    assert surrogate.error_message == "half a pair: \ufffd!"
    assert long_name.error_type is not None and len(long_name.error_type) <= 255
    assert long_name.error_type.endswith("[truncated]")
    assert huge.error_message is not None and len(huge.error_message) <= MAX_ERROR_CHARS
    assert huge.error_message.endswith("[truncated]")
    for execution in (nul, surrogate):
        assert "\x00" not in (execution.traceback or "")
    stored = ended[result.id]
    assert stored.status is ExecutionStatus.SUCCESS
    assert stored.result_summary == {
        "text": "nul \ufffd here",
        "pair": "\ufffd",
        "nested": ["ok", "\ufffd"],
    }


def test_storable_text() -> None:
    assert storable_text("plain", 10) == "plain"
    assert storable_text("a\x00b\ud83d", 10) == "a\ufffdb\ufffd"
    assert storable_text("\U0001f600 ok", 10) == "\U0001f600 ok"  # a real pair stays
    cut = storable_text("x" * 50, 20)
    assert len(cut) == 20 and cut.endswith("[truncated]")
    tail = storable_text("y" * 50, 20, keep="end")
    assert len(tail) == 20 and tail.startswith("[truncated]")
