"""The benchmark code runs at a tiny size, so it cannot rot. No timing is asserted:
only that every scenario runs, measures something and renders its table."""

from __future__ import annotations

import pytest
from benchmarks import __main__ as cli
from benchmarks import fire_rate, http_load, instances, scale, tasks
from benchmarks._common import Result

from tests.services import require_postgres


def _check(results: list[Result], scenario: str, variants: set[str]) -> None:
    assert {r.variant for r in results} == variants
    assert all(r.scenario == scenario for r in results)
    rendered = cli.table(results)
    assert f"### {scenario}" in rendered
    for variant in variants:
        assert variant in rendered


def test_fire_rate_runs_taskmgr_and_its_baselines_on_sqlite() -> None:
    results = fire_rate.run([20], 0.5, ["sqlite"], warmup=0.3)
    _check(results, "fire rate", {"APScheduler (memory)", "taskmgr sqlite", "raw SQL sqlite"})
    ours = next(r for r in results if r.variant == "taskmgr sqlite")
    assert set(ours.figures) == {"fires/s", "p50 ms", "p99 ms", "max ms", "missed", "CPU us/fire"}
    assert "vs APScheduler (memory)" in cli.ratios(results)[results.index(ours)]


def test_scale_runs_taskmgr_and_celery_beat() -> None:
    results = scale.run([40], 10, 0.5, celery_max=40, warmup=0.3)
    _check(results, "scale", {"taskmgr sqlite", "Celery beat"})


def test_http_runs_the_router_and_the_bare_endpoints() -> None:
    results = http_load.run(8, jobs=5)
    _check(results, "http", {"taskmgr router", "bare FastAPI"})
    assert {r.case for r in results} == {
        "GET /jobs",
        "GET /executions",
        "POST /jobs/{key}/trigger",
    }
    assert all(r.figures["errors"] == 0 for r in results)


@pytest.mark.postgres
def test_instances_run_on_postgres() -> None:
    require_postgres()
    results = instances.run(10, 0.5, warmup=0.5)
    _check(results, "instances", {"taskmgr x1 postgres", "taskmgr x3 postgres"})


def test_the_plan_names_only_known_scenarios() -> None:
    names = {name for name, _ in cli.plan(quick=True, only=[])}
    assert names <= set(cli.SCENARIOS)
    assert {name for name, _ in cli.plan(quick=True, only=["http"])} == {"http"}


def test_tasks_run_taskmgr_and_celery_delay() -> None:
    results = tasks.run(5, 20, 20, 3, ["sqlite"])
    variants = {r.variant for r in results}
    assert "taskmgr sqlite" in variants
    _check(results, "tasks", variants)
    ours = next(r for r in results if r.variant == "taskmgr sqlite")
    assert set(ours.figures) == {
        "single defers/s",
        "bulk defers/s",
        "executed/s",
        "start p50 ms",
        "start p99 ms",
    }
    assert ours.figures["start p99 ms"] >= ours.figures["start p50 ms"]
