"""``run_due()`` claims once more when the database ended its claim's transaction for
idling (the process was starved between two statements): nothing of that claim was
written, so the slot is still due and runs once; a second such end is raised."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from taskmgr import ExecutionStatus, TransactionTimedOutError, scheduled_job
from taskmgr.storage import MemoryStorage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RUNS: list[int] = []


@scheduled_job("retry.minutely", interval=60)
def minutely() -> None:
    RUNS.append(1)


class EndedClaims(MemoryStorage):
    """Ends the next ``times`` claims as PostgreSQL's idle-in-transaction timeout does:
    before anything is written."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def claim(self, **kwargs: Any) -> Any:
        if self.times > 0:
            self.times -= 1
            raise TransactionTimedOutError("claim failed: terminating connection")
        return super().claim(**kwargs)


@pytest.fixture(autouse=True)
def _clean() -> None:
    RUNS.clear()


def test_a_claim_ended_for_idling_is_made_again_and_the_slot_runs_once() -> None:
    clock = FakeClock(START)
    storage = EndedClaims(times=0)
    with make_test_service([minutely], clock=clock, storage=storage) as service:
        clock.advance(60)
        storage.times = 1
        [run] = service.run_due()
        assert (run.status, storage.times, RUNS) == (ExecutionStatus.SUCCESS, 0, [1])
        assert service.run_due() == []


def test_ended_twice_the_error_is_raised_and_the_slot_stays_due() -> None:
    clock = FakeClock(START)
    storage = EndedClaims(times=0)
    with make_test_service([minutely], clock=clock, storage=storage) as service:
        clock.advance(60)
        storage.times = 2
        with pytest.raises(TransactionTimedOutError):
            service.run_due()
        [run] = service.run_due()
        assert (run.status, RUNS) == (ExecutionStatus.SUCCESS, [1])
