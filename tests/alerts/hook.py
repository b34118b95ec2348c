"""A webhook receiver on 127.0.0.1 for the alerting tests: a real HTTP server in a
thread that records each request and answers as told."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Hook", "serve_hook"]


@dataclass
class Hook:
    """What the receiver saw: each request (path, headers, body), in order. It answers
    with the next status of ``statuses`` (200 once they run out) and, while ``hold`` is
    set, holds each request until ``release`` is (at most 30 s)."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)


@contextmanager
def serve_hook() -> Iterator[Hook]:
    """A running receiver (its ``url`` set); stopped on exit."""
    found = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            found.requests.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
            found.arrived.set()
            if found.hold.is_set():
                found.release.wait(30)
            status = found.statuses.pop(0) if found.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/taskmgr?token=t"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
