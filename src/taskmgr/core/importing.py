"""Import an object the host named as ``module.path:attribute``.

Used for host configuration only (``--app``, ``TASKMGR_APP``, the ``celery_app``
setting): never for a value read from the database or an HTTP request
(``docs/guarantees.md``, G6).

The library never changes ``sys.path``: a module is imported from where the host's
interpreter already looks. Only the ``taskmgr`` command makes its working directory
importable (:func:`taskmgr.cli.loader.make_cwd_importable`).
"""

from __future__ import annotations

import importlib

from taskmgr.exceptions import InvalidInputError

__all__ = ["import_object"]


def import_object(spec: str, *, field: str, example: str = "package.module:attribute") -> object:
    """``module.path:attribute`` → the object it names, imported with ``sys.path`` as it
    is (never changed here).

    :raises InvalidInputError: the spec is malformed, or names nothing.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidInputError(f"must look like {example!r}, got {spec!r}", field=field)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise InvalidInputError(
                f"module {module_name!r} not found (it must be importable: installed, "
                "or on sys.path)",
                field=field,
            ) from None
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
