"""Find the host's service from ``--app module:attribute`` (or ``TASKMGR_APP``).

This imports a module the operator named on the command line, like ``uvicorn
main:app`` or ``celery -A proj`` do. It is host configuration, never a value read
from the database or an HTTP request (``docs/guarantees.md``, G6).
"""

from __future__ import annotations

import os
import sys

from taskmgr.core.importing import import_object
from taskmgr.exceptions import InvalidInputError
from taskmgr.service import SchedulerService

__all__ = ["load_service", "make_cwd_importable"]


def make_cwd_importable() -> None:
    """Let the ``taskmgr`` command import the host's modules from its working directory
    (``--app``, and the ``celery_app`` setting of a service built from settings).

    Only the command does this, never the library (``import_object`` leaves
    ``sys.path`` alone): the command is the process's entry point, so the path is its
    own to set. The directory is **appended**, not put first as ``python -m``, uvicorn
    and ``celery -A`` do: it can then add the host's modules but never shadow the
    standard library or an installed package with a stray file of the same name in the
    directory the command happens to run from. A host module that must win over an
    installed one of the same name can be run as ``python -m taskmgr`` (Python puts the
    directory first itself) or installed.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def load_service(spec: str) -> SchedulerService:
    """``module.path:attribute`` → the ``SchedulerService`` it names. The attribute may
    also be a function taking no arguments that returns one (an app factory). The
    working directory is importable (:func:`make_cwd_importable`).

    :raises InvalidInputError: the spec is malformed, or names nothing usable.
    """
    make_cwd_importable()
    target = import_object(spec, field="app", example="package.module:service")
    if not isinstance(target, SchedulerService) and callable(target):
        target = target()
    if not isinstance(target, SchedulerService):
        raise InvalidInputError(
            f"{spec!r} is a {type(target).__name__}, not a SchedulerService", field="app"
        )
    return target
