"""HTTP: ``GET /jobs``, ``GET /executions`` and ``POST /jobs/{key}/trigger`` under a
bounded local load (a fixed number of requests over a few keep-alive connections),
taskmgr's router against bare FastAPI endpoints running the same SQL, one uvicorn
process serving both, on loopback."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks._common import Database, Result, insert_interval_jobs, percentile, temp_database

SCENARIO = "http"
ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(db: Database, port: int) -> Iterator[None]:
    env = {
        **os.environ,
        "TASKMGR_BENCH_DATABASE": db.url,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    args = [
        sys.executable, "-m", "uvicorn", "benchmarks.http_app:app", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the benchmark HTTP server exited")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            if time.time() > deadline:
                raise RuntimeError("the benchmark HTTP server did not start")
            time.sleep(0.1)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _load(port: int, method: str, paths: list[str], requests: int) -> dict[str, float | None]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client(index: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        body = b'{"force": true}' if method == "POST" else None
        headers = {"Content-Type": "application/json"} if body else {}
        for i in range(index, requests, CONNECTIONS):
            began = time.perf_counter()
            conn.request(method, paths[i % len(paths)], body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            if response.status >= 300:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ms = [x * 1000 for x in latencies]
    return {
        "req/s": round(len(ms) / elapsed, 1),
        "p50 ms": _r(percentile(ms, 50)),
        "p99 ms": _r(percentile(ms, 99)),
        "errors": errors,
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run(requests: int, kind: str = "sqlite", jobs: int = 200) -> list[Result]:
    results: list[Result] = []
    with temp_database(kind) as db:
        if kind != "sqlite":
            raise ValueError("the HTTP scenario runs on SQLite")  # bare SQL names no schema
        storage = db.storage()
        storage.open()
        first = datetime.now(UTC) + timedelta(days=1)
        insert_interval_jobs(storage, "benchmarks.http_app.noop", jobs, due=0, first_at=first)
        storage.close()
        port = _free_port()
        with _server(db, port):
            keys = [f"bench.{i:07d}" for i in range(jobs)]
            cases = [
                ("GET /jobs", "GET", ["/tm/jobs"], ["/bare/jobs"]),
                (
                    "POST /jobs/{key}/trigger",
                    "POST",
                    [f"/tm/jobs/{k}/trigger" for k in keys],
                    [f"/bare/jobs/{k}/trigger" for k in keys],
                ),
                ("GET /executions", "GET", ["/tm/executions"], ["/bare/executions"]),
            ]
            for case, method, ours, bare in cases:
                _load(port, method, ours, min(requests, 50))  # warm-up
                results.append(
                    Result(SCENARIO, "bare FastAPI", _load(port, method, bare, requests), case=case)
                )
                results.append(
                    Result(
                        SCENARIO, "taskmgr router", _load(port, method, ours, requests), case=case
                    )
                )
    return results
