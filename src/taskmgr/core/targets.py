"""Job bodies that are not module-level functions of the host's.

A job runs a registered function, found again by its registered name (never by an
import path). An adapter can offer another kind of body: a :class:`JobTarget` is a
callable that chooses its own registered name and says what its arguments are
(``__signature__``); the registry holds it like a function, and a job declared on it
is its ``__taskmgr_job__`` (see :func:`~taskmgr.core.decorators.get_definition`).
``taskmgr.celery.celery_job`` is one: the body of a Celery task the host already has.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

__all__ = ["JobTarget"]


class JobTarget(ABC):
    """A job's body an adapter provides, registered under :attr:`registered_name`."""

    @property
    @abstractmethod
    def registered_name(self) -> str:
        """The name jobs run it by: the same in every process, chosen by the adapter
        (``celery:<task name>``), never an import path."""

    @property
    @abstractmethod
    def __signature__(self) -> inspect.Signature:
        """The keyword arguments a run may pass (checked when a run is asked for)."""

    @abstractmethod
    def __call__(self, **kwargs: Any) -> Any:
        """Run the body once with a run's arguments (in the execution's context)."""

    def same_body(self, other: object) -> bool:
        """Whether ``other`` runs the same body: several jobs may share one registered
        name (one Celery task on two schedules) only when it does."""
        return other is self
