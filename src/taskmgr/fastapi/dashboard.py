"""The dashboard's routes: the static files shipped in the package, served by plain
routes behind the router's dependencies.

``APIRouter.mount(StaticFiles)`` is silently dropped by ``include_router``
(fastapi#1469), so each file has its own ``GET`` route, read once through
``importlib.resources`` (works from a wheel or a zip). Every URL in the files is
relative, so the dashboard works under any prefix. The strict Content-Security-Policy
allows nothing but the page's own files: no inline script, no other origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response

__all__ = ["SECURITY_HEADERS", "add_dashboard_routes"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (cheap with the ETag): a new taskmgr version shows at once.
    "Cache-Control": "no-cache",
}

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/core.js": ("core.js", "text/javascript; charset=utf-8"),
    "/history.js": ("history.js", "text/javascript; charset=utf-8"),
    "/incidents.js": ("incidents.js", "text/javascript; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}


def _asset_route(name: str, media_type: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    content = resources.files("taskmgr.fastapi").joinpath("static", name).read_bytes()
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'

    async def asset(request: Request) -> Response:  # in memory: no thread needed
        headers = {**SECURITY_HEADERS, "ETag": etag}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(content, media_type=media_type, headers=headers)

    asset.__name__ = f"taskmgr_dashboard_{name.replace('.', '_')}"
    return asset


def add_dashboard_routes(router: APIRouter) -> None:
    """Add ``GET /`` (the page) and its assets to ``router``, hidden from OpenAPI."""
    for path, (name, media_type) in _FILES.items():
        router.add_api_route(
            path,
            _asset_route(name, media_type),
            methods=["GET"],
            include_in_schema=False,
            response_class=Response,
            name=f"taskmgr_dashboard_{name.replace('.', '_')}",
        )
