"""Limits that protect the service from hostile or careless clients.

* :func:`guard_body` runs before FastAPI parses a request body: it refuses a
  non-JSON media type (415), reads the stream with a cap so neither a large
  ``Content-Length`` nor a chunked body gets past it (413), and checks the JSON
  cheaply (nesting depth, non-standard constants, NUL and lone surrogates) so the
  parser can neither recurse too deep nor hand invalid text to the database (422).
* :class:`RateLimit` and :class:`TriggerLimiter`: an opt-in cap on manual runs per
  job and principal, answered with 429 and ``Retry-After``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any

from fastapi import Request
from starlette.types import Message as ASGIMessage

from taskmgr.core.validation import KWARGS_MAX_DEPTH
from taskmgr.fastapi.errors import FieldError, HTTPProblem

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "UNSAFE_METHODS",
    "RateLimit",
    "TriggerLimiter",
    "guard_body",
    "is_json_type",
]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The body object and ``kwargs`` around the 32 levels ``kwargs`` may have.
MAX_JSON_DEPTH = KWARGS_MAX_DEPTH + 1
#: The methods that may change something: their requests are guarded.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# JSON strings (escapes included) are skipped before counting brackets, so a "[" in
# a string never counts; possessive quantifiers keep this linear on hostile input.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def is_json_type(content_type: str) -> bool:
    """Whether ``content_type`` is ``application/json`` or ``application/*+json``."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _too_large(limit: int) -> HTTPProblem:
    return HTTPProblem(413, "payload_too_large", f"the request body exceeds {limit} bytes")


def _invalid_json(detail: str, code: str = "invalid_json", field: str | None = None) -> HTTPProblem:
    return HTTPProblem(
        422,
        code,
        detail,
        errors=[FieldError(field=field, location="body", message=detail, type=code)],
    )


def _check_depth(body: bytes) -> None:
    depth = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _invalid_json(
                    f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep",
                    "json_too_deep",
                )
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_strings(value: Any) -> None:
    """Refuse NUL and lone surrogates anywhere (keys too): no database stores them."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else key
                _check_text(key, child_path)
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, path)


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise _invalid_json("strings must not contain NUL characters", "invalid_string", path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid_json(
            "strings must be valid Unicode (no lone surrogates)", "invalid_string", path
        ) from None


def check_json(body: bytes) -> None:
    """Refuse a body that is not plain, safe JSON, without risking the parser."""
    _check_depth(body)
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise _invalid_json("the body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _invalid_json(
            f"the body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    except (ValueError, RecursionError) as exc:  # NaN/Infinity, ints over 4300 digits
        raise _invalid_json(f"the body is not valid JSON: {exc}") from None
    _check_strings(value)


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPProblem(400, "bad_request", "invalid Content-Length header")
        if int(declared) > limit:
            raise _too_large(limit)  # refuse before reading a byte
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked (or lying) bodies: stop reading at the cap
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def guard_body(request: Request, limit: int) -> Request:
    """Check a write request's body before FastAPI sees it; return a request that
    replays the body that was read. Other methods are returned unchanged."""
    if request.method not in UNSAFE_METHODS:
        return request
    content_type = request.headers.get("content-type")
    # A browser form (urlencoded, multipart, text/plain) always sends one of these
    # types, so refusing them also stops cross-site form posts.
    if content_type is not None and not is_json_type(content_type):
        raise HTTPProblem(415, "unsupported_media_type", "request bodies must be application/json")
    body = await _read_capped(request, limit)
    if body:
        if content_type is None:
            raise HTTPProblem(
                415, "unsupported_media_type", "send the body with Content-Type: application/json"
            )
        check_json(body)
    replayed = False
    upstream = request.receive

    async def receive() -> ASGIMessage:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return Request(request.scope, receive)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` manual runs per ``per_seconds``, per job and principal."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be a positive integer, got {self.count!r}")
        if not (math.isfinite(self.per_seconds) and self.per_seconds > 0):
            raise ValueError(f"per_seconds must be positive, got {self.per_seconds!r}")


class TriggerLimiter:
    """A sliding-window counter per key, in this process (each API process counts
    its own requests; the database stays the arbiter of what runs)."""

    _MAX_KEYS = 10_000

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def acquire(self, key: tuple[str, str]) -> float | None:
        """Reserve one run for ``key``; None when allowed, else seconds to wait."""
        now = self._clock()
        with self._lock:
            if len(self._hits) > self._MAX_KEYS:
                self._forget_idle(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.limit.per_seconds:
                hits.popleft()
            if len(hits) >= self.limit.count:
                return max(hits[0] + self.limit.per_seconds - now, 0.0)
            hits.append(now)
            return None

    def release(self, key: tuple[str, str]) -> None:
        """Give back the newest reservation of ``key`` (the run was refused)."""
        with self._lock:
            hits = self._hits.get(key)
            if hits:
                hits.pop()

    def _forget_idle(self, now: float) -> None:
        cutoff = now - self.limit.per_seconds
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= cutoff]:
            del self._hits[key]
