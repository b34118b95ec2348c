"""The dispatcher port: how claimed executions reach the code that runs them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskmgr._clock import Clock
from taskmgr.storage.base import Claimed, Outcome

__all__ = ["DispatchContext", "Dispatcher"]


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


class Dispatcher(ABC):
    """Runs claimed executions somewhere and reports each one's outcome exactly once.

    Dispatchers hold no business rules: whether a slot runs, when a retry is due and
    which writes are allowed are decided by the scheduler and the storage fence.
    """

    @abstractmethod
    def start(self, context: DispatchContext) -> None:
        """Prepare to run executions (threads, event loops, broker connections)."""

    @abstractmethod
    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        """Hand over executions that are already ``running`` and owned by
        ``context.owner``. Must return quickly: the work happens elsewhere."""

    @abstractmethod
    def capacity(self) -> int:
        """How many more executions this dispatcher can take right now; the scheduler
        claims no more than this, so claimed work does not wait in a local queue."""

    @abstractmethod
    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking work. With ``wait``, return once every dispatched execution
        has reported its outcome."""
