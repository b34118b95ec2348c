"""An idle scheduler polls without claiming (one read, no lock), and still acts within
one poll on what another process changed without waking it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskmgr import ExecutionStatus, InlineDispatcher, SchedulerService, scheduled_job

RAN = threading.Event()
KEY = f"{__name__}.hourly"


@scheduled_job(interval=3600)
def hourly() -> None:
    RAN.set()


def _count(monkeypatch: pytest.MonkeyPatch, storage: Any, name: str, calls: Counter[str]) -> None:
    method = getattr(storage, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)

    monkeypatch.setattr(storage, name, counted)


def test_an_idle_loop_polls_without_claiming_and_sees_other_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'idle.db'}"
    RAN.clear()
    service = SchedulerService(
        url, jobs=[hourly], poll_interval=0.05, dispatcher=InlineDispatcher(2)
    )
    # another process's service: it writes to the database and wakes nobody here
    other = SchedulerService(url, jobs=[hourly], background=False)
    calls: Counter[str] = Counter()
    with service:
        for name in ("claim", "next_claim_at"):
            _count(monkeypatch, service.storage, name, calls)
        time.sleep(0.5)
        assert calls["next_claim_at"] >= 4
        assert calls["claim"] <= 1  # nothing was due: the polls only read
        assert not RAN.is_set()

        with other:
            execution = other.trigger_job(KEY)
        assert RAN.wait(5), "the run another process asked for was not claimed"
        assert calls["claim"] >= 1
        done = service.wait(execution.id, timeout=5)
        assert done.status is ExecutionStatus.SUCCESS
