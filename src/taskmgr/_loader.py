"""Find the host's service from ``--app module:attribute`` (or ``TASKMGR_APP``).

This imports a module the operator named on the command line, like ``uvicorn
main:app`` or ``celery -A proj`` do. It is host configuration, never a value read
from the database or an HTTP request (DESIGN G6).
"""

from __future__ import annotations

import importlib
import os
import sys

from taskmgr.exceptions import InvalidInputError
from taskmgr.service import SchedulerService

__all__ = ["import_object", "load_service"]


def import_object(spec: str, *, field: str, example: str = "package.module:attribute") -> object:
    """``module.path:attribute`` → the object it names, imported the way ``python -m``
    would (the current directory is importable).

    :raises InvalidInputError: the spec is malformed, or names nothing.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidInputError(f"must look like {example!r}, got {spec!r}", field=field)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise InvalidInputError(f"module {module_name!r} not found", field=field) from None
        raise  # the module exists but fails to import: show the host its own error
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidInputError(
                f"module {module_name!r} has no attribute {attribute!r}", field=field
            ) from None
    return target


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
