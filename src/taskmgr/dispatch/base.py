"""The dispatcher port: how claimed executions reach the code that runs them."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskmgr.core.clock import Clock
from taskmgr.core.registry import JobRegistry
from taskmgr.core.rules import Liveness
from taskmgr.execution.events import EventHub
from taskmgr.execution.run import ExecutionRun
from taskmgr.storage.base import Claimed, Outcome, Storage

__all__ = ["DispatchContext", "Dispatcher", "Runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a service shares with a dispatcher whose executions run in other
    processes (a Celery worker builds its own instance from it)."""

    storage: Storage
    clock: Clock
    registry: JobRegistry
    #: The host's listeners, told about runs in whatever process they happen.
    events: EventHub
    liveness: Liveness
    #: Connect the storage (idempotent); no I/O happens before it.
    open: Callable[[], None]
    #: Release what ``open`` acquired.
    close: Callable[[], None]


@dataclass(frozen=True, slots=True)
class DispatchContext:
    """What the service hands a dispatcher when it starts."""

    #: The instance id that owns the claimed executions.
    owner: str
    clock: Clock
    #: Look up a registered function by name (raises FunctionNotRegisteredError).
    resolve: Callable[[str], Callable[..., Any]]
    #: Report how an execution ended; thread-safe, never blocks on the database.
    report: Callable[[Outcome], None]
    #: The service's storage, for dispatchers that hand work to other processes (to
    #: put back work they could not hand over, and to see what was taken over).
    storage: Storage | None = None
    #: Called on the job's thread as each run starts (the service's event hub).
    on_start: Callable[[ExecutionRun], None] | None = None
    #: The event loop of the code that started the service, if it was started from
    #: one (also from a worker thread on its behalf): ``async def`` jobs run there.
    host_loop: asyncio.AbstractEventLoop | None = None


class Dispatcher(ABC):
    """Runs claimed executions somewhere and reports each one's outcome exactly once.

    Dispatchers hold no business rules: whether a slot runs, when a retry is due and
    which writes are allowed are decided by the scheduler and the storage fence.
    """

    def bind(self, runtime: Runtime) -> None:
        """Called once by the service's constructor. A dispatcher whose executions run
        in other processes (Celery workers) uses it to make the service's registry and
        storage known there; it must do no I/O. The default does nothing."""
        return None

    @abstractmethod
    def start(self, context: DispatchContext) -> None:
        """Prepare to run executions (threads, event loops, broker connections)."""

    @abstractmethod
    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        """Hand over executions that are already ``running`` and owned by
        ``context.owner``. Must return quickly: the work happens elsewhere."""

    def prepare(self, claimed: Sequence[Claimed]) -> None:
        """Called for executions claimed ahead of their slot (the loop's look-ahead),
        before they wait for it, never at the same time as :meth:`dispatch`: what can
        be done before the slot, so that :meth:`dispatch` has less to do when it comes
        (the Celery dispatcher records each message's task id here). Starts nothing.
        The same executions are dispatched at their slot, or never (missed, released
        at shutdown, given up). The default does nothing."""
        return None

    @abstractmethod
    def capacity(self) -> int:
        """How many more executions this dispatcher can take right now; the scheduler
        claims no more than this, so claimed work does not wait in a local queue."""

    def members(self) -> Mapping[str, Dispatcher]:
        """Dispatchers this one starts, stops and runs some executions on itself, by the
        name a job chooses them with (``CeleryDispatcher``'s in-process pool is
        ``inline``). A service sends the jobs that choose such a name straight to it,
        unless it was given a dispatcher of that name. The default has none."""
        return {}

    @abstractmethod
    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking work. With ``wait``, return once every dispatched execution
        has reported its outcome."""
