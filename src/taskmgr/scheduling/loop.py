"""The scheduler loop: claim due work, dispatch it, sleep until the next due time.

One thread per service. Everything it knows comes from the database on each tick,
so a change made by any process is acted on within one tick. A failing tick (the
database is down, a lock timed out) is logged and retried with backoff: the loop
never dies while the service runs.

Precise fires: with a ``lookahead`` (a running service's loop has
:data:`LOOKAHEAD`), a claim also takes the slots due within that many seconds; they
are stored ``running`` at once (claimed once, cluster-wide, like any other) and a
timer thread starts each one when the clock reaches its slot, never before. The loop
wakes half a look-ahead before the next due slot, so each claim carries every slot of
the next few tens of milliseconds and is committed before their time.

An idle loop polls without claiming: when a whole ``poll_interval`` passed with
nothing due in it and nothing woke the loop, it only reads when a claim may next find
work (:meth:`~taskmgr.storage.base.Storage.next_claim_at`: one read-only transaction,
no lock, nothing written) and claims once that time has come. Changes made by other
processes are seen by that read, at the same pace as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from taskmgr.core.clock import Clock, DatabaseClock
from taskmgr.core.models import ExecutionTrigger
from taskmgr.dispatch.base import Dispatcher
from taskmgr.dispatch.routing import Budget, DispatchRouter
from taskmgr.execution.events import EventHub
from taskmgr.execution.run import ExecutionRun
from taskmgr.scheduling.planner import Planner
from taskmgr.scheduling.timer import ArmedRuns
from taskmgr.storage.base import ClaimBatch, Claimed, ClaimPlan, Outcome, Storage

__all__ = ["LOOKAHEAD", "SchedulerLoop", "Vitals"]

logger = logging.getLogger("taskmgr.scheduler")

#: Sleep when work is due but nothing could be claimed (another instance holds it).
_CONTENDED_DELAY = 0.05
_MAX_BACKOFF = 30.0
#: Shortest sleep until the next due slot (see _delay).
_MIN_TICK = 0.01
#: Sleep while the dispatcher is full.
_BUSY_DELAY = 0.005
#: How far ahead (seconds) a running service's loop claims slots, to start each one
#: at its time from a timer. Short, so that a job changed, paused or deleted in that
#: time is the same race as a change committed right after a claim.
LOOKAHEAD = 0.05
#: The timer wakes this long (seconds) after the earliest armed slot, so that the
#: slots of that millisecond start together: at thousands of fires a second one wake
#: per slot would cost more (thread switches under one GIL) than it saves.
_QUANTUM = 0.001


class Vitals(Protocol):
    """Proves the instance alive on demand
    (:class:`~taskmgr.scheduling.maintenance.Maintenance`)."""

    def epoch(self) -> int: ...

    def confirm(self, epoch: int) -> bool: ...


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
        lookahead: float = 0.0,
        vitals: Vitals | None = None,
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
        #: Seconds ahead of their time that slots are claimed (0: claimed when due).
        self.lookahead = lookahead
        #: Proves the instance alive when its heartbeat looks stale after a claim.
        self.vitals = vitals
        self._armed = ArmedRuns()
        self._timer: threading.Thread | None = None
        self._stopping = False
        #: Dispatchers are handed work by one thread at a time (the loop, the timer).
        self._dispatch_lock = threading.Lock()
        #: The latest slot the last claim could take (its horizon).
        self._horizon: datetime | None = None

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
            epoch = self.vitals.epoch() if self.vitals is not None else 0
            options: dict[str, float] = {"lookahead": self.lookahead} if self.lookahead else {}
            now = self.clock.now()
            self._horizon = now
            if events is None or not events.active:
                claimed = self.storage.claim(
                    now=now,
                    owner=self.owner,
                    limit=limit,
                    planner=plan,
                    cap_at_database_now=self._capped,
                    **options,
                )
            else:
                plans: list[ClaimPlan] = []

                def planner(batch: ClaimBatch) -> ClaimPlan:
                    plans.append(plan(batch))
                    return plans[-1]

                claimed = self.storage.claim(
                    now=now,
                    owner=self.owner,
                    limit=limit,
                    planner=planner,
                    cap_at_database_now=self._capped,
                    **options,
                )
                events.claimed(claimed, plans[-1] if plans else None)
            if self.lookahead:
                self._horizon = now + timedelta(seconds=self.lookahead)
            if not claimed:
                return claimed
            due, ahead = claimed, list[Claimed]()
            if self.lookahead:
                now = self.clock.now()
                due = []
                for item in claimed:
                    early = _slot(item) and item.execution.scheduled_for > now
                    (ahead if early else due).append(item)
            if ahead:
                self._prepare(ahead)
                self._armed.arm(ahead, epoch)
            if due and not self._dispatch(due, epoch):
                return ahead  # given up: this instance is no longer alive
            return claimed

    def fire_due(self) -> int:
        """Start the claimed runs whose slot has come by the clock (what the timer thread
        does); returns how many were handed to the dispatcher."""
        armed = self._armed.take_due(self.clock.now())
        if not armed:
            return 0
        by_epoch: dict[int, list[Claimed]] = {}
        for item in armed:
            by_epoch.setdefault(item.epoch, []).append(item.claimed)
        return sum(self._dispatch(self._in_grace(runs), epoch) for epoch, runs in by_epoch.items())

    def armed(self) -> int:
        """How many claimed runs wait for their slot's time."""
        return len(self._armed)

    def _in_grace(self, runs: list[Claimed]) -> list[Claimed]:
        """The runs that may still start now; the others, past their misfire grace time
        (judged at the actual start), end ``missed`` with the reason."""
        if self.report is None:
            return runs
        now = self.clock.now()
        kept = []
        for item in runs:
            run = ExecutionRun(item, self.owner, self.clock)
            reason = run.too_late(now)
            if reason is None:
                kept.append(item)
            else:
                self.report(run.missed(reason))
        return kept

    def _dispatch(self, runs: Sequence[Claimed], epoch: int) -> int:
        if not runs:
            return 0
        if not self._still_owned(epoch):
            self._give_up(
                runs, "not started: this instance stopped heartbeating right after claiming it"
            )
            return 0
        with self._dispatch_lock:
            self.dispatcher.dispatch(runs)
        return len(runs)

    def _prepare(self, ahead: Sequence[Claimed]) -> None:
        """Let the dispatcher do before their slot what it can (a failure only leaves
        that work to the dispatch at the slot)."""
        try:
            with self._dispatch_lock:
                self.dispatcher.prepare(ahead)
        except Exception:
            logger.exception("preparing %d run(s) claimed ahead failed", len(ahead))

    def _still_owned(self, epoch: int) -> bool:
        """Whether the runs claimed under ``epoch`` are still this instance's own. A
        process frozen since its claim (longer than its peers wait) may have had them
        marked ``lost`` and retried elsewhere: they are then given up, never started
        late. A stale-looking heartbeat alone proves nothing (the heartbeat thread may
        just be late on a loaded process): a heartbeat made here decides."""
        vitals = self.vitals
        if vitals is not None and vitals.epoch() != epoch:
            return self.report is None  # declared dead (and registered again) since
        if self.may_claim is None or self.may_claim() or self.report is None:
            return True
        return vitals is not None and vitals.confirm(epoch)

    def _give_up(self, runs: Sequence[Claimed], reason: str) -> None:
        """End claimed runs that will not start as ``cancelled`` (fenced)."""
        if self.report is None:
            return  # nothing records outcomes: the reaper marks them lost
        for item in runs:
            self.report(ExecutionRun(item, self.owner, self.clock).cancelled(reason))

    def wake(self) -> None:
        """Run a tick now instead of at the next due time (a local change was made)."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="taskmgr-scheduler", daemon=True)
        self._thread.start()
        if self.lookahead:
            self._timer = threading.Thread(target=self._fire, name="taskmgr-timer", daemon=True)
            self._timer.start()

    def stop(self) -> None:
        """Stop claiming. Runs claimed ahead start at their time (within the look-ahead)
        before this returns; those whose time the clock has still not reached by then
        end ``cancelled``: none is left ``running`` with nobody to start it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._armed.changed:
            self._stopping = True
            self._armed.changed.notify_all()
        if self._timer is not None:
            self._timer.join()
            self._timer = None
        self._give_up(
            [armed.claimed for armed in self._armed.take_all()],
            "not started: the service stopped before its slot's time",
        )

    def _fire(self) -> None:
        """The timer thread: start each armed run when the clock reaches its slot."""
        changed = self._armed.changed
        deadline: float | None = None  # once stopping: how long armed runs are waited for
        while True:
            try:
                self.fire_due()
            except Exception:
                logger.exception("starting claimed runs failed")
            with changed:
                if self._stopping and deadline is None:
                    deadline = time.monotonic() + self.lookahead
                if deadline is not None and (not len(self._armed) or time.monotonic() >= deadline):
                    return
                first = self._armed.next_at()
                if first is None:
                    changed.wait()
                    continue
                # on the clock's time; re-checked on waking (a FakeClock may not have moved)
                delay = (first - self.clock.now()).total_seconds()
                if delay > 0:
                    changed.wait(min(delay + _QUANTUM, self.lookahead))

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
        if self.lookahead:
            horizon = self._horizon
            if horizon is None or next_due > horizon:
                # wake half a look-ahead early: the claim then takes every slot of the
                # next look-ahead, each started at its time by the timer
                delay = max(0.0, delay - self.lookahead / 2)
            # else a slot the last claim read but left (its job still running): claimed
            # at its time, which judges it as always
            self._idle = delay >= self.poll_interval
            return min(delay, self.poll_interval)
        # Never wake for less than _MIN_TICK: slots due within it are claimed together
        # (one transaction for several fires instead of one each, at the cost of at
        # most _MIN_TICK of lateness). A local change still wakes the loop at once.
        self._idle = delay >= self.poll_interval
        return min(max(delay, _MIN_TICK), self.poll_interval)


def _slot(claimed: Claimed) -> bool:
    """Whether ``claimed`` is a slot of a schedule (the only runs claimed ahead)."""
    return claimed.execution.trigger in _SLOTS


_SLOTS = frozenset({ExecutionTrigger.SCHEDULE, ExecutionTrigger.CATCHUP})
