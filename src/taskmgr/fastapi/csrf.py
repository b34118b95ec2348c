"""Refuse writes that a browser sends on behalf of another site (CSRF).

A page on another origin can make the operator's browser send a request with the
operator's cookie or HTTP Basic credentials: a form post, or a ``fetch`` that needs
no CORS preflight. Such a request can carry neither a custom header nor a JSON
``Content-Type``, so :func:`guard_cross_site` refuses a write (``POST``, ``PUT``,
``PATCH``, ``DELETE``) that has neither the dashboard's ``X-Taskmgr-Action`` header
nor a JSON body type. It also refuses a write whose ``Origin`` is not the request's
own (scheme, host and port), or that the browser marks ``Sec-Fetch-Site:
cross-site`` or ``same-site`` (another port or subdomain of the same site: a
``SameSite=Lax`` cookie is still sent to it). Clients that are not browsers send
neither header, and are only asked for the JSON type or the action header.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request

from taskmgr.fastapi.errors import HTTPProblem
from taskmgr.fastapi.limits import UNSAFE_METHODS, is_json_type

__all__ = ["ACTION_HEADER", "guard_cross_site"]

#: The header the dashboard sends on its writes; any value will do.
ACTION_HEADER = "X-Taskmgr-Action"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_REFUSED_FETCH_SITES = frozenset({"cross-site", "same-site"})

Origin = tuple[str, str, int | None]


def _origin(scheme: str, host: str | None, port: int | None) -> Origin | None:
    scheme = scheme.lower()
    if not scheme or not host:
        return None
    return scheme, host.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _parse_origin(value: str) -> Origin | None:
    """The origin an ``Origin`` header names; None for ``null`` or anything malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return None
    return _origin(parts.scheme, parts.hostname, port)


def _refused(detail: str, code: str = "cross_site_request") -> HTTPProblem:
    return HTTPProblem(403, code, detail)


def guard_cross_site(request: Request) -> None:
    """Raise a 403 problem for a write a browser may have sent for another site.

    Reads only headers: it runs before the body is read and before the host's
    dependencies, so a refused request writes nothing.
    """
    if request.method not in UNSAFE_METHODS:
        return
    headers = request.headers
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() in _REFUSED_FETCH_SITES:
        raise _refused(
            "the browser sent this request from another site or port (Sec-Fetch-Site); "
            "taskmgr's API accepts writes from its own origin only"
        )
    origin = headers.get("origin")
    if origin is not None:
        own = _origin(request.url.scheme, request.url.hostname, request.url.port)
        if own is None or _parse_origin(origin) != own:
            raise _refused(
                "the request's Origin is not this server's origin (scheme, host and port); "
                "behind a proxy, let the app see the scheme and host the browser used"
            )
    content_type = headers.get("content-type")
    if ACTION_HEADER not in headers and (content_type is None or not is_json_type(content_type)):
        raise _refused(
            f"a write must send Content-Type: application/json or an {ACTION_HEADER} header "
            "(a cross-site form cannot send either)",
            "action_header_required",
        )
