"""Execution events for the host's listeners, delivered off the hot path.

The scheduler loop, the job threads, the outcome writer and the reaper only put a
small tuple on a queue, and only while a listener is registered (no listener, no
work per fire). One thread, ``taskmgr-events``, turns those into
:class:`ExecutionEvent` objects and calls the listeners; a listener that raises is
logged and the others still run. Events describe what *this process* did: the
executions it started and whose outcome it wrote, the slots its claims recorded as
missed or skipped, the executions its reaper marked lost.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger
from taskmgr.exceptions import NotFoundError
from taskmgr.storage.base import Claimed, ClaimPlan, Outcome, Storage

if TYPE_CHECKING:
    from taskmgr.execution.run import ExecutionRun

__all__ = ["EventHub", "EventKind", "ExecutionEvent", "Listener"]

logger = logging.getLogger("taskmgr.events")


class EventKind(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    #: ``failed`` or ``timeout``: the run ended in an error.
    FAILED = "failed"
    MISSED = "missed"
    SKIPPED = "skipped"
    LOST = "lost"


_OUTCOME_KINDS = {
    ExecutionStatus.SUCCESS: EventKind.SUCCEEDED,
    ExecutionStatus.FAILED: EventKind.FAILED,
    ExecutionStatus.TIMEOUT: EventKind.FAILED,
    ExecutionStatus.LOST: EventKind.LOST,
    ExecutionStatus.MISSED: EventKind.MISSED,  # claimed ahead, started too late
}
_ROW_KINDS = {ExecutionStatus.MISSED: EventKind.MISSED, ExecutionStatus.SKIPPED: EventKind.SKIPPED}


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """Something that happened to one execution, as seen by this process."""

    kind: EventKind
    execution_id: str
    job_key: str | None
    scheduled_for: datetime | None
    attempt: int | None
    status: ExecutionStatus
    #: The instance that observed it (this service's ``instance_id``).
    instance_id: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    #: Why the execution exists (a deferred task, a slot, a retry). Like ``created_at``,
    #: None on the outcome of a run this process did not see start.
    trigger: ExecutionTrigger | None = None
    #: When its row was inserted (for a deferred task: when it was deferred).
    created_at: datetime | None = None

    def log_extra(self) -> dict[str, Any]:
        return {
            "taskmgr_job_key": self.job_key,
            "taskmgr_execution_id": self.execution_id,
            "taskmgr_scheduled_for": (
                self.scheduled_for.isoformat() if self.scheduled_for is not None else None
            ),
            "taskmgr_attempt": self.attempt,
        }


Listener = Callable[[ExecutionEvent], None]
#: job key, scheduled for, attempt, trigger, created at
_Identity = tuple[str, datetime, int, ExecutionTrigger, datetime]
_STOP = object()


class EventHub:
    """Listeners of one service and the thread that calls them."""

    def __init__(self, instance_id: str, storage: Storage | None = None) -> None:
        self.instance_id = instance_id
        self.storage = storage
        self._listeners: tuple[tuple[Listener, frozenset[EventKind]], ...] = ()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # identity of executions started here, until their outcome is written
        self._running: dict[str, _Identity] = {}
        self._idle = threading.Condition()
        self._pending = 0

    # -- registration ----------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether anyone listens: every hook checks this first, and does nothing else
        when it is false."""
        return bool(self._listeners)

    def add(self, listener: Listener, kinds: Iterable[EventKind | str] | None = None) -> None:
        wanted = frozenset(EventKind(k) for k in kinds) if kinds is not None else frozenset()
        with self._lock:
            self._listeners = (*self._listeners, (listener, wanted or frozenset(EventKind)))

    def remove(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = tuple((fn, kinds) for fn, kinds in self._listeners if fn != listener)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="taskmgr-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (for at most ``timeout`` seconds), then stop."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("event listeners still busy after %.0fs; not waiting", timeout)
        self._running.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far was delivered (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # -- hooks (called on the hot path: cheap, never raise) ----------------------------

    def started(self, claimed: Claimed, started_at: datetime | None) -> None:
        if self._listeners:
            self._put(("started", claimed, started_at))

    def run_started(self, run: ExecutionRun) -> None:
        if self._listeners:
            self._put(("started", run.claimed, run.started_at))

    def claimed(self, claimed: Sequence[Claimed], plan: ClaimPlan | None) -> None:
        """After a claim committed: report the missed/skipped rows it recorded."""
        if self._listeners:
            self._put(("claimed", claimed, plan))

    def outcomes(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        if self._listeners:
            self._put(("outcomes", outcomes, applied))

    def lost(self, claimed: Sequence[Claimed], completed_at: datetime) -> None:
        if self._listeners:
            self._put(("lost", claimed, completed_at))

    def later(self, deliver: Callable[[], None]) -> None:
        """Call ``deliver()`` on the listeners' thread, after what is queued (the
        incident listeners share the thread: a host's listeners are never called on a
        scheduler's or a job's thread)."""
        self._put(("later", deliver))

    def _put(self, item: tuple[Any, ...]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    # -- the listener thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if item[0] == "later":
                    item[1]()
                    continue
                for event in self._events(item):
                    self._deliver(event)
            except Exception:
                logger.exception("could not build execution events")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, event: ExecutionEvent) -> None:
        for listener, kinds in self._listeners:
            if event.kind not in kinds:
                continue
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "execution listener %r failed on %s event of execution %s",
                    listener,
                    event.kind.value,
                    event.execution_id,
                    extra=event.log_extra(),
                )

    def _events(self, item: tuple[Any, ...]) -> list[ExecutionEvent]:
        what = item[0]
        if what == "started":
            return [self._started_event(item[1], item[2])]
        if what == "claimed":
            return self._claim_events(item[1], item[2])
        if what == "outcomes":
            return self._outcome_events(item[1], item[2])
        return self._lost_events(item[1], item[2])

    def _started_event(self, claimed: Claimed, started_at: datetime | None) -> ExecutionEvent:
        e = claimed.execution
        self._running[e.id] = (e.job_key, e.scheduled_for, e.attempt, e.trigger, e.created_at)
        return ExecutionEvent(
            EventKind.STARTED,
            e.id,
            e.job_key,
            e.scheduled_for,
            e.attempt,
            ExecutionStatus.RUNNING,
            self.instance_id,
            started_at=started_at,
            trigger=e.trigger,
            created_at=e.created_at,
        )

    def _claim_events(
        self, claimed: Sequence[Claimed], plan: ClaimPlan | None
    ) -> list[ExecutionEvent]:
        if plan is None:
            return []
        won = {item.execution.id for item in claimed}
        events: list[ExecutionEvent] = []
        for advance in plan.advances:
            rows = [row for row in advance.executions if row.status in _ROW_KINDS]
            if not rows:
                continue
            # The advance is all or nothing: it won if one of its runs was claimed,
            # else ask the database whether its rows exist (misfires are rare).
            if not won.intersection(row.id for row in advance.executions) and not self._stored(
                rows[0].id
            ):
                continue
            events.extend(
                ExecutionEvent(
                    _ROW_KINDS[row.status],
                    row.id,
                    row.job_key,
                    row.scheduled_for,
                    row.attempt,
                    row.status,
                    self.instance_id,
                    completed_at=row.completed_at,
                    error_message=row.error_message,
                    trigger=ExecutionTrigger(row.trigger),
                    created_at=row.created_at,
                )
                for row in rows
            )
        return events

    def _stored(self, execution_id: str) -> bool:
        if self.storage is None:
            return False
        try:
            self.storage.get_execution(execution_id)
        except NotFoundError:
            return False
        return True

    def _outcome_events(
        self, outcomes: Sequence[Outcome], applied: Sequence[bool]
    ) -> list[ExecutionEvent]:
        events: list[ExecutionEvent] = []
        for outcome, ok in zip(outcomes, applied, strict=True):
            identity = self._running.pop(outcome.execution_id, None)
            kind = _OUTCOME_KINDS.get(outcome.status)
            if not ok or kind is None:
                continue
            key, slot, attempt, trigger, created_at = (
                identity if identity is not None else (None, None, None, None, None)
            )
            events.append(
                ExecutionEvent(
                    kind,
                    outcome.execution_id,
                    key,
                    slot,
                    attempt,
                    outcome.status,
                    self.instance_id,
                    started_at=outcome.started_at,
                    completed_at=outcome.completed_at,
                    duration_ms=outcome.duration_ms,
                    error_type=outcome.error_type,
                    error_message=outcome.error_message,
                    trigger=trigger,
                    created_at=created_at,
                )
            )
        return events

    def _lost_events(
        self, claimed: Collection[Claimed], completed_at: datetime
    ) -> list[ExecutionEvent]:
        return [
            ExecutionEvent(
                EventKind.LOST,
                item.execution.id,
                item.execution.job_key,
                item.execution.scheduled_for,
                item.execution.attempt,
                ExecutionStatus.LOST,
                self.instance_id,
                started_at=item.execution.started_at,
                completed_at=completed_at,
                error_message=f"its owner {item.execution.owner} stopped heartbeating",
                trigger=item.execution.trigger,
                created_at=item.execution.created_at,
            )
            for item in claimed
        ]
