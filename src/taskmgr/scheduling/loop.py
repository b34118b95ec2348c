"""The scheduler loop: claim due work, dispatch it, sleep until the next due time.

One thread per service. Everything it knows comes from the database on each tick,
so a change made by any process is acted on within one tick. A failing tick (the
database is down, a lock timed out) is logged and retried with backoff: the loop
never dies while the service runs.

An idle loop polls without claiming: when a whole ``poll_interval`` passed with
nothing due in it and nothing woke the loop, it only reads when a claim may next find
work (:meth:`~taskmgr.storage.base.Storage.next_claim_at`: one read-only transaction,
no lock, nothing written) and claims once that time has come. Changes made by other
processes are seen by that read, at the same pace as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from taskmgr.core.clock import Clock, DatabaseClock
from taskmgr.dispatch.base import Dispatcher
from taskmgr.dispatch.routing import Budget, DispatchRouter
from taskmgr.execution.events import EventHub
from taskmgr.execution.run import ExecutionRun
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.base import ClaimBatch, Claimed, ClaimPlan, Outcome, Storage

__all__ = ["SchedulerLoop"]

logger = logging.getLogger("taskmgr.scheduler")

#: Sleep when work is due but nothing could be claimed (another instance holds it).
_CONTENDED_DELAY = 0.05
_MAX_BACKOFF = 30.0
#: Shortest sleep until the next due slot (see _delay).
_MIN_TICK = 0.01
#: Sleep while the dispatcher is full.
_BUSY_DELAY = 0.005


class SchedulerLoop:
    def __init__(
        self,
        storage: Storage,
        dispatcher: Dispatcher,
        planner: Planner,
        clock: Clock,
        *,
        owner: str,
        batch_size: int,
        poll_interval: float,
        may_claim: Callable[[], bool] | None = None,
        report: Callable[[Outcome], None] | None = None,
        events: EventHub | None = None,
    ) -> None:
        self.storage = storage
        self.dispatcher = dispatcher
        self.planner = planner
        self.clock = clock
        self.owner = owner
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.may_claim = may_claim
        self.report = report
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self._last_limit = batch_size
        #: Whether the last sleep was a whole poll interval with nothing due in it.
        self._idle = False
        #: Told about each claim while someone listens (the service's event hub).
        self.events = events
        # With the database's clock, each claim is also capped at the database's own
        # time, read in the claim: a clock that ran ahead (a bad reading, drift since
        # the last one) cannot start a slot early or mark one missed before it is due.
        # An injected clock (tests, FakeClock) decides time alone.
        self._capped = isinstance(clock, DatabaseClock)

    def tick(self) -> list[Claimed]:
        """Claim what is due now (at most what the dispatcher can take) and dispatch it."""
        with self._tick_lock:
            self.storage.take_next_due_hint()  # only one left by this tick's claim may be used
            limit = self._last_limit = min(self.batch_size, self.dispatcher.capacity())
            if limit <= 0 or (self.may_claim is not None and not self.may_claim()):
                return []
            # several dispatchers: each one's jobs start only as far as it has room
            router = self.dispatcher
            budget = Budget(router) if isinstance(router, DispatchRouter) else None

            def plan(batch: ClaimBatch) -> ClaimPlan:
                return self.planner.plan(batch, budget)

            events = self.events
            if events is None or not events.active:
                claimed = self.storage.claim(
                    now=self.clock.now(),
                    owner=self.owner,
                    limit=limit,
                    planner=plan,
                    cap_at_database_now=self._capped,
                )
            else:
                plans: list[ClaimPlan] = []

                def planner(batch: ClaimBatch) -> ClaimPlan:
                    plans.append(plan(batch))
                    return plans[-1]

                claimed = self.storage.claim(
                    now=self.clock.now(),
                    owner=self.owner,
                    limit=limit,
                    planner=planner,
                    cap_at_database_now=self._capped,
                )
                events.claimed(claimed, plans[-1] if plans else None)
            if claimed:
                if self._froze_since_claiming(claimed):
                    return []
                self.dispatcher.dispatch(claimed)
            return claimed

    def _froze_since_claiming(self, claimed: list[Claimed]) -> bool:
        """A process frozen between its claim and the dispatch (longer than its peers
        wait) may have had these executions marked ``lost`` and retried elsewhere:
        give them up (``cancelled``, fenced) rather than start them late."""
        if self.may_claim is None or self.may_claim() or self.report is None:
            return False
        for item in claimed:
            self.report(
                ExecutionRun(item, self.owner, self.clock).cancelled(
                    "not started: this instance stopped heartbeating right after claiming it"
                )
            )
        return True

    def wake(self) -> None:
        """Run a tick now instead of at the next due time (a local change was made)."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="taskmgr-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        backoff = 0.0
        poll = False  # the first pass claims
        while not self._stop.is_set():
            try:
                if poll:
                    delay = self._poll()
                else:
                    claimed = self.tick()
                    delay = self._delay(len(claimed))
                backoff = 0.0
            except Exception:
                backoff = min(_MAX_BACKOFF, max(0.5, backoff * 2))
                logger.exception("scheduler tick failed; retrying in %.1fs", backoff)
                delay = backoff
                self._idle = False
            woken = self._wake.wait(delay) if delay > 0 else False
            self._wake.clear()
            # a wake-up (a local change, a notification) or a due time claims at once
            poll = self._idle and not woken

    def _poll(self) -> float:
        """A poll interval passed with nothing due in it: read when a claim may find
        work (no lock, nothing written) and claim only once that has come."""
        now = self.clock.now()
        next_claim = self.storage.next_claim_at(now=now)
        if next_claim is not None and next_claim <= now:
            self._idle = False
            return 0.0
        return self._until(next_claim, 0)

    def _delay(self, claimed: int) -> float:
        self._idle = False
        capacity = self.dispatcher.capacity()
        if capacity <= 0:
            # Runs free their slot before their outcome is written (which wakes us):
            # look again soon; checking the capacity costs no query.
            return min(self.poll_interval, _BUSY_DELAY)
        if claimed >= min(self.batch_size, self._last_limit):
            return 0.0  # the claim was full: more may be due right now, no query needed
        next_due: datetime | None
        known, next_due = self.storage.take_next_due_hint()
        if not known:
            next_due = self.storage.next_due_at()
        return self._until(next_due, claimed)

    def _until(self, next_due: datetime | None, claimed: int) -> float:
        """How long to sleep before the next claim, given the next due time."""
        if next_due is None:
            self._idle = True
            return self.poll_interval
        delay = (next_due - self.clock.now()).total_seconds()
        if delay <= 0:
            self._idle = False
            return 0.0 if claimed else _CONTENDED_DELAY
        # Never wake for less than _MIN_TICK: slots due within it are claimed together
        # (one transaction for several fires instead of one each, at the cost of at
        # most _MIN_TICK of lateness). A local change still wakes the loop at once.
        self._idle = delay >= self.poll_interval
        return min(max(delay, _MIN_TICK), self.poll_interval)
