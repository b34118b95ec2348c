"""The benchmark code runs at a tiny size, so it cannot rot. No timing is asserted:
only that every scenario runs, measures something and renders its table."""

from __future__ import annotations

import sys

import pytest
from benchmarks import __main__ as cli
from benchmarks import (
    fire_rate,
    http_load,
    instances,
    loop_lag,
    resources,
    saturation,
    scale,
    tasks,
)
from benchmarks._common import Result
from benchmarks._peers import FIGURES

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


def test_saturation_raises_the_rate_until_a_variant_falls_behind() -> None:
    results = saturation.run(
        [20, 40], 0.5, ["sqlite"], instances=(1,), peers=("APScheduler 3 (memory)",)
    )
    curve = [r for r in results if r.scenario == saturation.SCENARIO]
    assert {r.variant for r in curve} == {"taskmgr sqlite x1", "APScheduler 3 (memory)"}
    ours = [r for r in curve if r.variant == "taskmgr sqlite x1"]
    assert [r.case for r in ours] in (["20/s"], ["20/s", "40/s"])  # stops once behind
    first = ours[0].figures
    assert {"fires/s", "p99 ms", "missed", "unaccounted", "RSS MB", "load"} <= set(first)
    summary = [r for r in results if r.scenario == saturation.SUMMARY]
    assert {r.variant for r in summary} == {"taskmgr sqlite x1", "APScheduler 3 (memory)"}
    rendered = cli.table(results)
    assert f"### {saturation.SCENARIO}" in rendered
    assert "max sustainable" in rendered


def test_saturation_judges_a_rate_by_its_missed_slots_and_p99() -> None:
    assert not saturation.behind({"p99 ms": 999.0, "missed": 0, "unaccounted": 0})
    assert saturation.behind({"p99 ms": 1001.0, "missed": 0})
    assert saturation.behind({"p99 ms": 5.0, "missed": 1})
    assert saturation.behind({"p99 ms": 5.0, "missed": 0, "unaccounted": 2})
    assert saturation.behind({"p99 ms": None})


def test_saturation_compares_three_instances_with_one() -> None:
    rows = [
        Result(saturation.SUMMARY, "taskmgr postgres x1", {"fires/s": 2000}, "taskmgr postgres x1"),
        Result(saturation.SUMMARY, "taskmgr postgres x3", {"fires/s": 4000}),
    ]
    for row in rows:
        row.case = "max sustainable"
    assert "vs taskmgr postgres x1: fires/s x2.0" in cli.ratios(rows)[1]


@pytest.mark.postgres
@pytest.mark.parametrize("peer", ["apscheduler4", "procrastinate"])
def test_a_saturation_peer_runs_in_its_own_environment(peer: str) -> None:
    require_postgres()
    reason = saturation.peers_available()
    if reason is not None:
        pytest.skip(reason)
    figures = saturation.run_peer(peer, 5, 1.0, warmup=2.0)
    assert {"fires/s", "p99 ms", "missed", "RSS MB"} <= set(figures)


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


def test_tasks_run_taskmgr_and_celery() -> None:
    results = tasks.run(5, 20, 20, 3, ["sqlite"], peers=("celery",))
    _check(results, "tasks", {"taskmgr sqlite", "Celery (Redis)"})
    ours = next(r for r in results if r.variant == "taskmgr sqlite")
    assert set(ours.figures) == set(FIGURES)
    assert ours.figures["start p99 ms"] >= ours.figures["start p50 ms"]
    celery = next(r for r in results if r.variant == "Celery (Redis)")
    if not celery.note.startswith("skipped"):
        assert set(celery.figures) == set(FIGURES) - {"bulk defers/s"}


def test_tasks_note_the_peers_that_are_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("procrastinate", "pgqueuer"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    results = tasks.run(5, 20, 20, 3, [], peers=("procrastinate", "pgqueuer"))
    _check(results, "tasks", {"procrastinate postgres", "pgqueuer postgres"})
    for row in results:
        assert row.figures == {}
        assert row.note.startswith("skipped: ")
        assert "not installed" in row.note
        assert ".[bench]" in row.note
    printed = capsys.readouterr().out
    assert "procrastinate postgres skipped" in printed
    assert "pgqueuer postgres skipped" in printed


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("peer", "modules"),
    [("procrastinate", ("procrastinate", "psycopg_pool")), ("pgqueuer", ("pgqueuer", "asyncpg"))],
)
def test_a_postgres_peer_runs_at_a_tiny_size(peer: str, modules: tuple[str, ...]) -> None:
    for module in modules:
        pytest.importorskip(module)
    require_postgres()
    row = tasks.run_peer(peer, 5, 20, 20, 3)
    assert row.variant == f"{peer} postgres"
    assert set(row.figures) == set(FIGURES)
    assert row.figures["start p99 ms"] >= row.figures["start p50 ms"]


def test_tasks_ratios_compare_postgres_with_the_postgres_peers_only() -> None:
    figures = dict.fromkeys(FIGURES, 10.0)
    results = [
        Result("tasks", "taskmgr sqlite", figures, case="one process"),
        Result("tasks", "taskmgr postgres", figures, case="one process"),
        Result("tasks", "procrastinate postgres", figures, case="one process"),
        Result("tasks", "pgqueuer PostgreSQL", figures, case="one process"),
        Result("tasks", "Celery (Redis)", {"single defers/s": 5.0}, case="one process"),
    ]
    notes = cli.ratios(results)
    assert "procrastinate" not in notes[0]
    assert "pgqueuer" not in notes[0]
    assert "vs Celery (Redis): single defers/s x2.0" in notes[0]
    assert "vs procrastinate postgres: single defers/s x1.0, bulk defers/s x1.0, " in notes[1]
    assert "executed/s x1.0, start p50 ms x1.0" in notes[1]
    assert "vs pgqueuer PostgreSQL" in notes[1]


def _check_loop_lag(row: Result, kind: str) -> None:
    assert (row.scenario, row.variant) == ("tasks", f"taskmgr {kind}")
    assert row.case == loop_lag.case(loop_lag.RATE)
    assert set(row.figures) == set(loop_lag.FIGURES)
    assert 0 <= row.figures["loop lag p99 ms"] <= row.figures["loop lag max ms"]
    assert row.figures["defers/s"] > 0
    assert "| loop lag p99 ms |" in cli.table([row])


def test_tasks_measure_the_loop_lag_of_async_code_deferring() -> None:
    results = tasks.run(5, 20, 20, 3, ["sqlite"], peers=())
    [row] = [r for r in results if r.case == loop_lag.case(loop_lag.RATE)]
    _check_loop_lag(row, "sqlite")


@pytest.mark.postgres
def test_the_loop_lag_is_measured_on_postgres() -> None:
    require_postgres()
    [row] = loop_lag.run(20, ["postgres"])
    _check_loop_lag(row, "postgres")


def test_resources_measure_instances_idle_and_firing_beside_a_peer() -> None:
    results = resources.run(
        [10], [20], ["sqlite"], window=1.0, rate_window=1.0, warmup=0.3, peers=("APScheduler 3",)
    )
    main = [r for r in results if r.scenario == resources.SCENARIO]
    _check(main, resources.SCENARIO, {"taskmgr sqlite", "APScheduler 3 sqlite"})
    cases = {(r.variant, r.case) for r in main}
    assert cases == {
        ("taskmgr sqlite", "idle, 10 jobs"),
        ("APScheduler 3 sqlite", "idle, 10 jobs"),
        ("taskmgr sqlite", "20 fires/s"),
    }
    for row in main:
        assert row.figures["RSS MB"] > 0 and row.figures["CPU s/min"] >= 0
        assert row.figures["connections"] is None  # SQLite: no server to ask
    idle = next(r for r in main if r.case == "idle, 10 jobs" and r.variant == "taskmgr sqlite")
    assert idle.figures["db tx/s"] >= 0 and idle.figures["statements/s"] >= 0  # ~1 poll/s
    firing = next(r for r in main if r.case == "20 fires/s")
    assert firing.figures["fires/s"] > 0
    split = [r for r in results if r.scenario == resources.BY_THREAD]
    assert {r.case for r in split} == {
        "idle, 10 jobs: transactions/s",
        "idle, 10 jobs: CPU ms/min",
    }
    assert set(split[0].figures) == {*resources.THREADS, "total"}
    assert "vs APScheduler 3 sqlite" in cli.ratios(main)[main.index(idle)]


def test_resources_note_the_peers_that_are_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("procrastinate", "pgqueuer"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    results = resources.run(
        [], [], ["postgres"], window=0, rate_window=0, peers=("procrastinate", "pgqueuer")
    )
    assert [(r.variant, r.figures) for r in results] == [
        ("procrastinate postgres", {}),
        ("pgqueuer postgres", {}),
    ]
    assert all("not installed" in r.note and ".[bench]" in r.note for r in results)
