"""URLs of the router's own routes (``Location`` headers), without a route search per
request.

``request.url_for`` walks the app's routes to find one by name, then builds the
request's base URL and joins them, on every call. What it makes depends only on the
route and on what the request says of where it was sent (scheme, ``Host``, server,
root path): it is made once per such combination, with a marker in place of the
value, and each request only puts its value in. Starlette's string convertor and URL
joining insert a value as it is, so the URL is the one ``url_for`` gives (a test
compares them).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from fastapi import Request
from starlette.datastructures import URLPath

__all__ = ["url_of"]

#: Stands for the value while a URL is made: it matches every pattern of the router's
#: path parameters (job keys, execution ids) and no fixed part of a path.
_MARK = "0taskmgr0location0mark0"
#: Most URLs kept per router (the ``Host`` header is the client's: bounded).
_MAX_KEPT = 256
#: The URL around the value, per router (by id: a FastAPI router is not hashable),
#: dropped with the router.
_kept: dict[int, tuple[weakref.ref[Any], dict[tuple[Any, ...], tuple[str, str]]]] = {}
_lock = threading.Lock()


def _kept_of(provider: Any) -> dict[tuple[Any, ...], tuple[str, str]]:
    key = id(provider)
    with _lock:
        entry = _kept.get(key)
        if entry is None or entry[0]() is not provider:
            ref = weakref.ref(provider, lambda _ref: _kept.pop(key, None))
            entry = _kept[key] = (ref, {})
    return entry[1]


def _host(scope: Any) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return bytes(value)
    return None


def url_of(request: Request, name: str, param: str, value: str) -> str:
    """``str(request.url_for(name, **{param: value}))``, made once per route and origin."""
    scope = request.scope
    provider = scope.get("router") or scope.get("app")
    if provider is None or "/" in value or not value:
        return str(request.url_for(name, **{param: value}))  # its errors, as they are
    where = (
        name,
        param,
        scope.get("scheme"),
        _host(scope),
        tuple(scope.get("server") or ()),
        scope.get("app_root_path"),
        scope.get("root_path"),
    )
    kept = _kept_of(provider)
    around = kept.get(where)
    if around is None:
        path = provider.url_path_for(name, **{param: _MARK})
        url = str(URLPath(str(path)).make_absolute_url(request.base_url))
        head, mark, tail = url.rpartition(_MARK)
        if not mark or _MARK in head:  # pragma: no cover - the marker in a fixed part
            return str(request.url_for(name, **{param: value}))
        if len(kept) >= _MAX_KEPT:
            kept.clear()
        kept[where] = around = (head, tail)
    return around[0] + value + around[1]
