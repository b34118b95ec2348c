"""The allow-list of functions a service may run.

Jobs name their function by a registered name, never by an import path: a value read
from the database or an HTTP request can only select among functions the host
registered in code (``docs/guarantees.md``, G6).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any

from taskmgr.core.decorators import get_definition
from taskmgr.core.definition import check_function, function_name
from taskmgr.core.models import JobDefinition
from taskmgr.core.targets import JobTarget
from taskmgr.exceptions import (
    FunctionAlreadyRegisteredError,
    FunctionNotRegisteredError,
    JobExistsError,
)

__all__ = ["JobRegistry"]


class JobRegistry:
    """Registered functions by name, and the jobs declared on them with ``@scheduled_job``."""

    def __init__(self, check: Callable[[JobDefinition], None] | None = None) -> None:
        #: Called with each job declared on a function before it is registered (the
        #: service refuses a dispatcher it does not have); raising registers nothing.
        self.check = check
        self._functions: dict[str, Callable[..., Any]] = {}
        self._definitions: dict[str, JobDefinition] = {}

    def register(self, target: Callable[..., Any] | types.ModuleType) -> list[str]:
        """Register a function, or every ``@scheduled_job`` function defined in a module
        (and every declared :class:`~taskmgr.core.targets.JobTarget` it holds, e.g. a
        ``celery_job``). A :class:`JobTarget` registers under its own name.

        Returns the registered names. Registering the same function again is a no-op.

        :raises FunctionAlreadyRegisteredError: another function has the same name.
        :raises JobExistsError: another function declares the same job key.
        :raises InvalidFunctionError: ``target`` is not a module-level function.
        """
        if isinstance(target, types.ModuleType):
            functions = [
                value
                for value in vars(target).values()
                if (
                    inspect.isfunction(value)
                    and get_definition(value) is not None
                    and value.__module__ == target.__name__
                )
                or (isinstance(value, JobTarget) and get_definition(value) is not None)
            ]
            return [self._register_function(func) for func in functions]
        return [self._register_function(target)]

    def _register_function(self, func: Callable[..., Any]) -> str:
        if isinstance(func, JobTarget):
            name = func.registered_name
            existing: Any = self._functions.get(name)
            if existing is not None and not (existing is func or func.same_body(existing)):
                raise FunctionAlreadyRegisteredError(
                    f"another job body is already registered as {name!r}"
                )
        else:
            check_function(func)
            name = function_name(func)
            existing = self._functions.get(name)
            if existing is not None and existing is not func:
                raise FunctionAlreadyRegisteredError(
                    f"another function is already registered as {name!r}"
                )
        definition = get_definition(func)
        if definition is not None:
            other = self._definitions.get(definition.key)
            if other is not None and (other.func != name or other != definition):
                raise JobExistsError(definition.key)
            if self.check is not None:
                self.check(definition)
            self._definitions[definition.key] = definition
        self._functions.setdefault(name, func)  # one body per name (see JobTarget.same_body)
        return name

    def register_builtin(self, name: str, func: Callable[..., Any], job: JobDefinition) -> None:
        """Register one of taskmgr's own jobs (a bound callable under a reserved name,
        which ``register`` would refuse), replacing any previous one of that name."""
        self._functions[name] = func
        self._definitions[job.key] = job

    def unregister_builtin(self, name: str, key: str) -> None:
        self._functions.pop(name, None)
        self._definitions.pop(key, None)

    def get(self, name: str) -> Callable[..., Any]:
        """:raises FunctionNotRegisteredError: nothing is registered under ``name``."""
        try:
            return self._functions[name]
        except KeyError:
            raise FunctionNotRegisteredError(name) from None

    def resolve(self, func: Callable[..., Any] | str) -> str:
        """The registered name for a function or a name; registers a new function."""
        if isinstance(func, str):
            self.get(func)
            return func
        return self._register_function(func)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[str]:
        return iter(self._functions)

    def __len__(self) -> int:
        return len(self._functions)

    def definitions(self) -> list[JobDefinition]:
        """The jobs declared in code, by key."""
        return [self._definitions[key] for key in sorted(self._definitions)]
