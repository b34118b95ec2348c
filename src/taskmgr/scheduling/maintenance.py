"""Keep this instance's row alive and clean up after dead ones.

Heartbeat: refresh ``last_heartbeat`` every ``heartbeat_interval`` (and read the
database's clock again; :class:`~taskmgr.core.clock.DatabaseClock` decides what a
reading may change, so one that waited on a stalled network changes nothing). If the
instance was declared dead meanwhile (it froze longer than ``heartbeat_timeout``), it
registers again; its executions were already marked ``lost`` and their late outcomes
are rejected by the storage fence.
While its last successful heartbeat is too old to be sure it is still considered
alive, the instance claims nothing (:meth:`Maintenance.alive`).

Reaper: every ``sweep_interval``, executions still ``running`` under an instance whose
heartbeat is older than ``heartbeat_timeout`` become ``lost``, and jobs with retries
left get their next attempt. One reaper runs at a time across all instances (the
storage's lock); rows of instances gone for ``instance_retention`` are deleted (looked
for at most once a minute, or every ``instance_retention`` when that is shorter: a
transaction per sweep for rows that are due after a day was a tenth of an idle
instance's transactions). An instance sweeps only after a ``heartbeat_timeout`` of
unbroken heartbeats of its own, so after a database outage nobody is declared dead
before it could heartbeat again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from taskmgr.core.clock import Clock
from taskmgr.core.rules import Liveness
from taskmgr.execution.run import next_attempt
from taskmgr.storage.base import Claimed, Storage

__all__ = ["Maintenance"]

logger = logging.getLogger("taskmgr.maintenance")

#: Longest time between two deletions of old instance rows (seconds).
CLEANUP_EVERY = 60.0


class Maintenance:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        liveness: Liveness,
        instance_id: str,
        register: Callable[[], None],
        calibrate: Callable[[], object] | None = None,
        on_lost: Callable[[list[Claimed], datetime], None] | None = None,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.liveness = liveness
        self.instance_id = instance_id
        self.register = register
        self.calibrate = calibrate
        #: Told about the executions this reaper marked lost (the service's event hub).
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_beat = time.monotonic()
        self._healthy_since: float | None = None
        self._stale_logged = False
        self._cleaned_at: float | None = None
        #: How many times this instance registered again after being declared dead.
        self._epoch = 0
        self._beat_lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        self._last_beat = time.monotonic()
        # Two threads: a sweep waiting on a peer's locks must never delay this
        # instance's own heartbeats (or it would stop claiming, or be declared dead).
        # The sweeps start a third of an interval after the heartbeats (by default both
        # come every 5 s; the alert rounds take the next third): two threads'
        # transactions at the same moment make the pool open a second connection,
        # which their next meeting would keep open.
        self._threads = [
            threading.Thread(
                target=self._every,
                args=(self.liveness.heartbeat_interval, self.heartbeat, "heartbeat"),
                name="taskmgr-heartbeat",
                daemon=True,
            ),
            threading.Thread(
                target=self._every,
                args=(self.liveness.sweep_interval, self.sweep, "sweep"),
                kwargs={"first_after": self.liveness.sweep_interval / 3},
                name="taskmgr-reaper",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def alive(self) -> bool:
        """Whether peers surely still see this instance as alive
        (:meth:`Liveness.may_claim`, measured on this host's monotonic clock)."""
        age = time.monotonic() - self._last_beat
        fresh = self.liveness.may_claim(age)
        if not fresh and not self._stale_logged:
            logger.error(
                "instance %s has not heartbeated for %.1fs: not claiming until it does",
                self.instance_id,
                age,
            )
        self._stale_logged = not fresh
        return fresh

    def epoch(self) -> int:
        """Changes each time this instance is found declared dead (and registers
        again): runs claimed under an older epoch may have been marked ``lost``."""
        return self._epoch

    def confirm(self, epoch: int) -> bool:
        """Heartbeat now, on the caller's thread, and tell whether this instance's row
        stayed alive since ``epoch`` was read (before a claim): then its peers have not
        declared it dead since, and the runs it claimed are still its own. False when
        it was declared dead meanwhile, or the heartbeat failed (nothing is proven).

        For the scheduler loop when the last heartbeat looks stale (:meth:`alive`): on a
        loaded process the heartbeat thread may merely be late."""
        if epoch != self._epoch:
            return False
        try:
            self.heartbeat()
        except Exception:
            logger.warning(
                "instance %s could not heartbeat to confirm it is alive", self.instance_id
            )
            return False
        return epoch == self._epoch

    def heartbeat(self) -> None:
        with self._beat_lock:  # the heartbeat thread and a confirm() may call at once
            try:
                if self.calibrate is not None:
                    self.calibrate()
                if not self.storage.heartbeat(self.instance_id, now=self.clock.now()):
                    logger.error(
                        "instance %s was declared dead by its peers (no heartbeat for %ss); "
                        "registering again",
                        self.instance_id,
                        self.liveness.heartbeat_timeout,
                    )
                    self._epoch += 1
                    self.register()
            except Exception:
                self._healthy_since = None
                raise
            self._last_beat = time.monotonic()
            if self._healthy_since is None:
                self._healthy_since = self._last_beat

    def sweep(self) -> int:
        """Mark the executions of dead instances ``lost``; schedule their retries.

        Only once this instance has heartbeated without a break for a whole
        ``heartbeat_timeout``: after it (or the database) was away, its peers get the
        time to heartbeat again before anyone is judged by their last heartbeat.
        """
        healthy = self._healthy_since
        if healthy is None or time.monotonic() - healthy < self.liveness.heartbeat_timeout:
            return 0
        now = self.clock.now()
        # the retries are inserted with the lost rows: a reaper dying right after its
        # commit, or a failing insert, cannot drop one
        lost = self.storage.reap(
            heartbeat_before=self.liveness.dead_before(now),
            now=now,
            retry=lambda claimed: next_attempt(claimed, now),
        )
        if lost is None:
            return 0  # another instance is sweeping right now
        if lost and self.on_lost is not None:
            self.on_lost(lost, now)
        for claimed in lost:
            execution = claimed.execution
            logger.warning(
                "execution %s of %r lost: its owner %s stopped heartbeating",
                execution.id,
                execution.job_key,
                execution.owner,
                extra={
                    "taskmgr_job_key": execution.job_key,
                    "taskmgr_execution_id": execution.id,
                    "taskmgr_scheduled_for": execution.scheduled_for.isoformat(),
                    "taskmgr_attempt": execution.attempt,
                },
            )
        removed = self._clean_up(now)
        if removed:
            logger.info(
                "removed %d instance row(s) gone for over %ss",
                removed,
                self.liveness.instance_retention,
            )
        return len(lost)

    def _clean_up(self, now: datetime) -> int:
        """Delete the rows of instances gone for ``instance_retention``, when the last
        deletion is old enough."""
        retention = self.liveness.instance_retention
        last, at = self._cleaned_at, time.monotonic()
        if last is not None and at - last < min(CLEANUP_EVERY, retention):
            return 0
        removed = self.storage.delete_instances(
            last_heartbeat_before=now - timedelta(seconds=retention)
        )
        self._cleaned_at = at
        return removed

    def _every(
        self, interval: float, action: Callable[[], object], what: str, first_after: float = 0.0
    ) -> None:
        if first_after and self._stop.wait(first_after):
            return
        while True:
            try:
                action()
            except Exception:
                logger.exception("%s failed; retrying in %.1fs", what, interval)
            if self._stop.wait(interval):
                return
