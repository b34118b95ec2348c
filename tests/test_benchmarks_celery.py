"""The Celery dispatch benchmark runs at a tiny size (a real worker of each pool on
Redis, PostgreSQL), so it cannot rot. No timing is asserted: only that every case ran
every execution, side by side with raw ``delay()``, and renders its table."""

from __future__ import annotations

import pytest
from benchmarks import __main__ as cli
from benchmarks import celery_dispatch

from tests.services import require_postgres, require_redis


@pytest.mark.postgres
def test_celery_dispatch_runs_taskmgr_and_raw_delay_on_each_pool() -> None:
    require_postgres()
    require_redis()
    results = celery_dispatch.run(6, samples=3)
    cases = [
        "6 runs, solo worker",
        "6 runs, threads worker (8)",
        "start latency, idle solo worker",
    ]
    assert [r.case for r in results] == [case for case in cases for _ in range(2)]
    assert [r.variant for r in results] == ["raw delay()", "taskmgr CeleryDispatcher"] * 3
    assert [r.figures["done"] for r in results] == [6, 6, 6, 6, 3, 3]
    rendered = cli.table(results)
    assert "### celery dispatch" in rendered
    assert "vs raw delay(): executions/s x" in rendered
