"""``create_router``: taskmgr's JSON API (and dashboard) as a FastAPI ``APIRouter``.

Built by a factory that takes everything it depends on as arguments (the service,
the host's auth dependencies, limits), like fastapi-users' routers, so a host can
mount it under any prefix, several times, and tests can build throwaway apps.
Routes are ``async def`` awaiting an :class:`~taskmgr.AsyncSchedulerService`: each
call to the sync core runs in a worker thread, so none blocks the event loop.
The routes themselves are in :mod:`.job_routes`, :mod:`.task_routes`,
:mod:`.history_routes`, :mod:`.audit_routes` and :mod:`.system_routes`, the parameters
and responses they share in :mod:`.parameters`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute

from taskmgr.fastapi.audit_routes import add_audit_routes
from taskmgr.fastapi.dashboard import add_dashboard_routes
from taskmgr.fastapi.history_routes import add_history_routes
from taskmgr.fastapi.incident_routes import add_incident_routes
from taskmgr.fastapi.job_routes import add_job_routes
from taskmgr.fastapi.limits import (
    DEFAULT_MAX_BODY_BYTES,
    UNSAFE_METHODS,
    RateLimit,
    TriggerLimiter,
)
from taskmgr.fastapi.pause_routes import add_pause_routes
from taskmgr.fastapi.problems import ProblemRoute
from taskmgr.fastapi.services import AnyService, awaitable_service
from taskmgr.fastapi.system_routes import add_system_routes
from taskmgr.fastapi.task_routes import add_task_routes
from taskmgr.fastapi.window_routes import add_window_routes

__all__ = ["Writes", "create_router"]

#: Who may write, when no ``write_dependencies`` say it: every caller that may read
#: (``"readers"``), or nobody, with no write route at all (``"none"``).
Writes = Literal["readers", "none"]
_WRITES = ("readers", "none")


def create_router(
    service: AnyService,
    *,
    dependencies: Sequence[DependsParam] = (),
    write_dependencies: Sequence[DependsParam] | None = None,
    writes: Writes | None = None,
    public: bool = False,
    dashboard: bool = True,
    actor: Callable[..., str | None] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    trigger_rate_limit: RateLimit | None = None,
    dashboard_write: bool | None = None,
) -> APIRouter:
    """The JSON API (and, with ``dashboard``, the dashboard at ``GET /``) for ``service``,
    a :class:`~taskmgr.SchedulerService` or an :class:`~taskmgr.AsyncSchedulerService`.

    :param dependencies: applied to every route, the dashboard included: your auth
        (e.g. ``[Depends(require_user)]``). Required unless ``public=True``.
    :param write_dependencies: added to the routes that change something (create,
        change, delete, trigger, defer, cancel, pause, resume, cleanup). Raise 403 for
        a principal that may read but not write: the dashboard then hides its actions.
        Who may write is never implied: pass these, or ``writes``.
    :param writes: instead of ``write_dependencies``: ``"readers"`` lets every caller
        that passes ``dependencies`` (with ``public``: anyone) write; ``"none"``
        builds a read-only router, without any write route.
    :param public: build without auth dependencies (a local demo, or auth done by a
        proxy in front of the app). Never the default (``docs/guarantees.md``, G6).
    :param actor: a dependency returning who makes a change (e.g. the user name from
        your auth; default none): recorded in the audit log of every write, and in the
        ``actor`` of a manual run or a deferred one. A write is recorded with source
        ``dashboard`` when it carries ``X-Taskmgr-Action: dashboard`` (the dashboard's
        writes), else ``api``.
    :param max_body_bytes: larger request bodies are refused with 413 before parsing.
    :param trigger_rate_limit: at most ``count`` manual runs per ``per_seconds`` per
        job and actor in this process; more get 429 with ``Retry-After``. Default off.
    :param dashboard_write: whether the dashboard offers actions (run now, pause,
        resume) to callers the write dependencies let through; default: off with
        ``writes="none"``, else the service's ``dashboard_write`` setting
        (``TASKMGR_DASHBOARD_WRITE``). The JSON API's writes are governed by
        ``write_dependencies``/``writes`` alone.
    :raises ValueError: no ``dependencies`` and not ``public``; neither
        ``write_dependencies`` nor ``writes`` (or both); ``dashboard_write=True``
        with ``writes="none"``.
    :raises TypeError: ``service`` is not a service.
    """
    if not dependencies and not public:
        raise ValueError(
            "create_router() needs an auth dependency, e.g. dependencies=[Depends(require_user)]; "
            "pass public=True to serve taskmgr's API without one"
        )
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ValueError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    guard = _write_guard(write_dependencies, writes)
    read_only = guard is None
    if read_only and dashboard_write:
        raise ValueError(
            'dashboard_write=True needs writes: a router built with writes="none" has none'
        )
    aservice = awaitable_service(service)
    router = APIRouter(dependencies=list(dependencies), route_class=_route_class(max_body_bytes))
    guards = guard or []
    limiter = TriggerLimiter(trigger_rate_limit) if trigger_rate_limit is not None else None
    who: Callable[..., Any] = actor if actor is not None else _anonymous
    add_job_routes(router, aservice, guards, limiter, who)
    add_pause_routes(router, aservice, guards, who)
    add_window_routes(router, aservice, guards, who)
    add_task_routes(router, aservice, guards, who)
    add_history_routes(router, aservice)
    add_audit_routes(router, aservice)
    add_incident_routes(router, aservice)
    add_system_routes(router, aservice, guards, False if read_only else dashboard_write, who)
    if read_only:  # no write route at all: the app answers them (404, 405)
        router.routes = [
            route
            for route in router.routes
            if not (isinstance(route, APIRoute) and UNSAFE_METHODS & (route.methods or set()))
        ]
    if dashboard:
        add_dashboard_routes(router)
    return router


def _write_guard(
    write_dependencies: Sequence[DependsParam] | None, writes: Writes | None
) -> list[DependsParam] | None:
    """The dependencies of the write routes ([] for every reader); None: read-only."""
    if writes is not None and writes not in _WRITES:
        raise ValueError(f'writes must be "readers" or "none", got {writes!r}')
    if write_dependencies and writes is not None:
        raise ValueError(f"create_router() takes write_dependencies or writes={writes!r}, not both")
    if write_dependencies:
        return list(write_dependencies)
    if writes is None:
        raise ValueError(
            "create_router() needs to be told who may write (create, change, delete, run, "
            "pause, resume, cancel, cleanup): pass write_dependencies=[Depends(require_admin)] "
            'to let only the callers they accept write, writes="readers" to let every caller '
            'that may read write too, or writes="none" for a read-only router'
        )
    return [] if writes == "readers" else None


async def _anonymous() -> str | None:
    return None  # async: FastAPI runs a plain ``def`` dependency in a worker thread


def _route_class(max_body_bytes: int) -> type[ProblemRoute]:
    return type("TaskmgrRoute", (ProblemRoute,), {"max_body_bytes": max_body_bytes})
