"""A ready-made app around the router, and ``serve()`` to run it with uvicorn.

For ``taskmgr demo`` and quick looks at a service; real hosts mount
:func:`~taskmgr.fastapi.create_router` into their own app instead.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from fastapi import FastAPI

from taskmgr.fastapi.lifespan import lifespan
from taskmgr.fastapi.router import create_router
from taskmgr.fastapi.services import AnyService
from taskmgr.version import __version__

__all__ = ["BackgroundServer", "create_app", "serve"]


def create_app(service: AnyService, *, prefix: str = "", **router_options: Any) -> FastAPI:
    """A FastAPI app that starts and stops ``service`` and serves its router (and
    dashboard) under ``prefix``. ``router_options`` go to ``create_router``."""
    app = FastAPI(title="taskmgr", version=__version__, lifespan=lifespan(service))
    app.include_router(create_router(service, **router_options), prefix=prefix, tags=["taskmgr"])
    return app


def serve(
    service: AnyService,
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
    knowingly) before listening on other interfaces. Like ``create_router``, it needs
    to be told who may write: ``write_dependencies=[...]``, ``writes="readers"`` or
    ``writes="none"``.
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("serve() needs uvicorn: pip install 'taskmgr[fastapi]'") from exc
    app = create_app(service, prefix=prefix, **router_options)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """:func:`create_app` served by uvicorn on a thread of its own, for a process whose
    main thread does something else (``taskmgr demo`` prints its table there).

    ``start()`` returns once the server listens, or raises ``OSError`` when it cannot
    (the port is taken). ``stop()`` ends it; the service is left as it was.
    """

    def __init__(
        self,
        service: AnyService,
        host: str = "127.0.0.1",
        port: int = 8765,
        **router_options: Any,
    ) -> None:
        import uvicorn

        self.url = f"http://{host}:{port}/"
        self._address = (host, port)
        config = uvicorn.Config(
            create_app(service, **router_options), host=host, port=port, log_level="error"
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        # bound here, so that a port in use is this OSError (the OS's words) rather
        # than a line uvicorn logs to stderr before its thread ends
        sock = socket.socket(socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind(self._address)
        except OSError:
            sock.close()
            raise
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="taskmgr-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():  # uvicorn ended before listening
                sock.close()
                raise OSError(f"could not listen on {self.url}")
            if time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise OSError(f"{self.url} did not start within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
