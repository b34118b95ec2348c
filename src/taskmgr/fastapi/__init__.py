"""taskmgr's HTTP surface for FastAPI hosts (extra ``taskmgr[fastapi]``).

::

    from fastapi import Depends, FastAPI
    from taskmgr.fastapi import create_router, lifespan

    app = FastAPI(lifespan=lifespan(service))
    app.include_router(
        create_router(service, dependencies=[Depends(require_user)],
                      write_dependencies=[Depends(require_admin)]),
        prefix="/admin/jobs",
        tags=["taskmgr"],
    )

:func:`create_router` builds the JSON API and the dashboard; errors are RFC 9457
``application/problem+json`` produced by the router itself (:class:`ProblemRoute`).
:func:`lifespan` starts and stops the service with the host app. :func:`serve`
runs a stand-alone app with uvicorn (what ``taskmgr demo`` uses).
"""

from __future__ import annotations

try:
    import fastapi as _fastapi  # noqa: F401  (probe: the extra is installed)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("taskmgr.fastapi needs FastAPI: pip install 'taskmgr[fastapi]'") from exc

from taskmgr.fastapi.app import BackgroundServer, create_app, serve
from taskmgr.fastapi.lifespan import ServiceLifespan, lifespan
from taskmgr.fastapi.limits import RateLimit
from taskmgr.fastapi.problems import Problem, ProblemRoute, problem_response
from taskmgr.fastapi.router import create_router

__all__ = [
    "BackgroundServer",
    "Problem",
    "ProblemRoute",
    "RateLimit",
    "ServiceLifespan",
    "create_app",
    "create_router",
    "lifespan",
    "problem_response",
    "serve",
]
