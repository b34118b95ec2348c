"""The signature of taskmgr's webhook requests, for the sender and for a receiver.

Each request carries ``X-Taskmgr-Timestamp`` (Unix seconds) and
``X-Taskmgr-Signature: sha256=<hex>``, the HMAC-SHA256 of ``b"<timestamp>." + body``
keyed with the webhook's secret. A receiver recomputes it over the raw body
(:func:`verify_webhook_signature`), compares in constant time, and refuses a timestamp older
than a few minutes, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "verify_webhook_signature",
]

SIGNATURE_HEADER = "X-Taskmgr-Signature"
TIMESTAMP_HEADER = "X-Taskmgr-Timestamp"
_PREFIX = "sha256="


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Taskmgr-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify_webhook_signature(
    secret: bytes | str,
    body: bytes,
    *,
    timestamp: str | int,
    signature: str,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` (the ``X-Taskmgr-Signature`` header) signs ``body`` (the
    raw request body) at ``timestamp`` (the ``X-Taskmgr-Timestamp`` header) with
    ``secret``, and that timestamp is within ``tolerance`` seconds of ``now`` (default:
    this host's clock)."""
    key = secret.encode() if isinstance(secret, str) else secret
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(key, body, sent), signature)
