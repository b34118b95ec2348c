"""Claimed runs waiting for their slot's time (the loop's look-ahead claims them a few
tens of milliseconds early). Only a data structure: the scheduler loop's timer thread
waits on it and starts what :meth:`ArmedRuns.take_due` hands out.

Time is the injected clock's: a run is handed out once ``clock.now()`` has reached
its slot, never before, whatever the host's timers say."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from taskmgr.storage.base import Claimed

__all__ = ["Armed", "ArmedRuns"]


@dataclass(frozen=True, slots=True, order=True)
class Armed:
    """One claimed run, to be started at ``at`` (its slot)."""

    at: datetime
    seq: int
    claimed: Claimed = field(compare=False)
    #: The instance's liveness epoch when it was claimed (see Maintenance.epoch).
    epoch: int = field(compare=False)


class ArmedRuns:
    """A thread-safe heap of :class:`Armed` runs, earliest slot first."""

    def __init__(self) -> None:
        self._heap: list[Armed] = []
        self._seq = itertools.count()
        self.changed = threading.Condition()

    def arm(self, items: Iterable[Claimed], epoch: int) -> None:
        with self.changed:
            for item in items:
                armed = Armed(item.execution.scheduled_for, next(self._seq), item, epoch)
                heapq.heappush(self._heap, armed)
            self.changed.notify_all()

    def take_due(self, now: datetime) -> list[Armed]:
        """Remove and return the runs whose slot is at or before ``now``."""
        due: list[Armed] = []
        with self.changed:
            heap = self._heap
            while heap and heap[0].at <= now:
                due.append(heapq.heappop(heap))
        return due

    def take_all(self) -> list[Armed]:
        with self.changed:
            taken, self._heap = sorted(self._heap), []
        return taken

    def next_at(self) -> datetime | None:
        with self.changed:
            return self._heap[0].at if self._heap else None

    def __len__(self) -> int:
        with self.changed:
            return len(self._heap)
