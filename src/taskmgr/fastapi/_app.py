"""A ready-made app around the router, and ``serve()`` to run it with uvicorn.

For ``taskmgr demo`` and quick looks at a service; real hosts mount
:func:`~taskmgr.fastapi.create_router` into their own app instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from taskmgr import __version__
from taskmgr.fastapi._lifespan import lifespan
from taskmgr.fastapi._router import create_router
from taskmgr.service import SchedulerService

__all__ = ["create_app", "serve"]


def create_app(service: SchedulerService, *, prefix: str = "", **router_options: Any) -> FastAPI:
    """A FastAPI app that starts and stops ``service`` and serves its router (and
    dashboard) under ``prefix``. ``router_options`` go to ``create_router``."""
    app = FastAPI(title="taskmgr", version=__version__, lifespan=lifespan(service))
    app.include_router(create_router(service, **router_options), prefix=prefix, tags=["taskmgr"])
    return app


def serve(
    service: SchedulerService,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    prefix: str = "",
    log_level: str = "warning",
    **router_options: Any,
) -> None:
    """Run :func:`create_app` with uvicorn until interrupted (Ctrl-C or SIGTERM).

    The service is started with the app unless it is already running. Binds to
    ``127.0.0.1`` by default: pass auth ``dependencies`` (or ``public=True``
    knowingly) before listening on other interfaces.
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("serve() needs uvicorn: pip install 'taskmgr[fastapi]'") from exc
    app = create_app(service, prefix=prefix, **router_options)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
