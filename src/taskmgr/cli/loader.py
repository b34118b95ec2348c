"""Find the host's service from ``--app module:attribute`` (or ``TASKMGR_APP``).

This imports a module the operator named on the command line, like ``uvicorn
main:app`` or ``celery -A proj`` do. It is host configuration, never a value read
from the database or an HTTP request (``docs/guarantees.md``, G6).
"""

from __future__ import annotations

from taskmgr.core.importing import import_object
from taskmgr.exceptions import InvalidInputError
from taskmgr.service import SchedulerService

__all__ = ["load_service"]


def load_service(spec: str) -> SchedulerService:
    """``module.path:attribute`` → the ``SchedulerService`` it names. The attribute may
    also be a function taking no arguments that returns one (an app factory).

    :raises InvalidInputError: the spec is malformed, or names nothing usable.
    """
    target = import_object(spec, field="app", example="package.module:service")
    if not isinstance(target, SchedulerService) and callable(target):
        target = target()
    if not isinstance(target, SchedulerService):
        raise InvalidInputError(
            f"{spec!r} is a {type(target).__name__}, not a SchedulerService", field="app"
        )
    return target
