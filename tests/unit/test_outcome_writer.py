"""The outcome writer against a storage that refuses one outcome's data: the others are
written, the refused one is written as ``failed`` with a placeholder, and nothing is
retried forever; an outage, by contrast, is retried until it passes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from taskmgr.core.models import ExecutionStatus
from taskmgr.exceptions import DataRejectedError, StorageError
from taskmgr.execution.outcomes import OutcomeWriter
from taskmgr.storage.base import Outcome

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Recorder:
    """Just enough storage: ``record_outcomes`` refuses any batch holding an outcome
    whose message contains ``BAD``, and fails ``outages`` times first."""

    def __init__(self, outages: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.stored: dict[str, Outcome] = {}
        self.outages = outages

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.calls.append([o.execution_id for o in outcomes])
        if self.outages:
            self.outages -= 1
            raise StorageError("record_outcomes failed: the server closed the connection")
        if any("BAD" in (o.error_message or "") for o in outcomes):
            raise DataRejectedError("record_outcomes failed: invalid byte sequence")
        for outcome in outcomes:
            self.stored[outcome.execution_id] = outcome
        return [True] * len(outcomes)


def outcome(n: int, message: str | None = None) -> Outcome:
    return Outcome(
        execution_id=f"e{n}",
        owner="me",
        status=ExecutionStatus.FAILED if message else ExecutionStatus.SUCCESS,
        started_at=T0,
        completed_at=T0,
        error_type="ValueError" if message else None,
        error_message=message,
        result_summary=None if message else n,
    )


def write(storage: Recorder, outcomes: list[Outcome]) -> list[tuple[str, bool]]:
    written: list[tuple[str, bool]] = []
    done = threading.Event()

    def on_written(batch: Sequence[Outcome], applied: Sequence[bool]) -> None:
        written.extend((o.execution_id, ok) for o, ok in zip(batch, applied, strict=True))
        if len(written) == len(outcomes):
            done.set()

    writer = OutcomeWriter(storage, on_written, retry_max_delay=0.01)  # type: ignore[arg-type]
    for item in outcomes:
        writer.submit(item)
    writer.start()
    assert done.wait(10)
    writer.stop()
    return written


def test_a_refused_outcome_holds_back_nothing_else() -> None:
    storage = Recorder()
    outcomes = [outcome(n, "BAD \x00" if n == 5 else None) for n in range(8)]
    written = write(storage, outcomes)
    assert sorted(written) == sorted((f"e{n}", True) for n in range(8))
    assert {f"e{n}": storage.stored[f"e{n}"].result_summary for n in range(8) if n != 5} == {
        f"e{n}": n for n in range(8) if n != 5
    }
    placeholder: Any = storage.stored["e5"]
    assert placeholder.status is ExecutionStatus.FAILED
    assert placeholder.error_type == "taskmgr.DataRejectedError"
    assert "BAD" not in placeholder.error_message
    assert placeholder.traceback is None
    # split in halves down to the one refused outcome: a bounded number of calls
    assert len(storage.calls) <= 2 * len(outcomes)


def test_an_outage_is_retried_until_it_passes() -> None:
    storage = Recorder(outages=3)
    written = write(storage, [outcome(n) for n in range(3)])
    assert sorted(written) == [("e0", True), ("e1", True), ("e2", True)]
    assert len(storage.calls) == 4  # three failures, then the whole batch at once
