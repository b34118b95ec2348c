"""``python -m benchmarks [--quick] [--only SCENARIO ...]`` from the repository root."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks._common import Result, postgres_available, redis_available

SCENARIOS = (
    "fire-rate",
    "saturation",
    "scale",
    "celery",
    "http",
    "instances",
    "tasks",
    "resources",
)

#: The figures compared (taskmgr / baseline) in each scenario.
RATIO_KEYS = {
    "fire rate": ("fires/s", "p99 ms", "CPU us/fire"),
    "saturation": ("fires/s", "p99 ms"),
    "saturation: the most each sustains": ("fires/s",),
    "scale": ("CPU us/fire", "start-up s"),
    "celery dispatch": ("executions/s", "p50 ms", "p99 ms"),
    "http": ("req/s", "p99 ms"),
    "instances": ("fires/s",),
    "tasks": ("single defers/s", "bulk defers/s", "executed/s", "start p50 ms"),
    "resources": ("connections", "RSS MB", "CPU s/min", "db tx/s"),
}
_KINDS = ("sqlite", "postgres")


def _kind(variant: str) -> str | None:
    """The database a variant runs on, when its name says ("postgres" in "PostgreSQL" too)."""
    return next((k for k in _KINDS if k in variant.lower()), None)


def ratios(results: Sequence[Result]) -> dict[int, str]:
    """For each taskmgr row, its ratios against the baselines of the same case: those on
    the same database, and those whose name names none (in-memory, Redis)."""
    notes: dict[int, str] = {}
    for index, row in enumerate(results):
        if not row.variant.startswith("taskmgr"):
            continue
        kind = _kind(row.variant)
        parts = []
        for other in results:
            same = other.scenario == row.scenario and other.case == row.case
            if not same or other is row:
                continue
            if other.variant.startswith("taskmgr") and other.baseline_of != other.variant:
                continue
            other_kind = _kind(other.variant)
            if other_kind is not None and kind is not None and other_kind != kind:
                continue
            figures = [
                f"{key} x{_ratio(row.figures.get(key), other.figures.get(key))}"
                for key in RATIO_KEYS.get(row.scenario, ())
                if _ratio(row.figures.get(key), other.figures.get(key)) is not None
            ]
            if figures:
                parts.append(f"vs {other.variant}: " + ", ".join(figures))
        if row.scenario == "scale":
            first = next(
                (r for r in results if r.scenario == "scale" and r.variant == row.variant), None
            )
            if first is not None and first is not row:
                cost = _ratio(row.figures.get("CPU us/fire"), first.figures.get("CPU us/fire"))
                if cost is not None:
                    parts.append(f"CPU/fire vs {first.case.split(' jobs')[0]} jobs: x{cost}")
        notes[index] = "; ".join(parts)
    return notes


def _ratio(ours: object, theirs: object) -> float | None:
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float) or not theirs:
        return None
    return round(ours / theirs, 2)


def table(results: Sequence[Result]) -> str:
    """A Markdown table per scenario: one row per variant and case."""
    notes = ratios(results)
    out: list[str] = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        rows = [(i, r) for i, r in enumerate(results) if r.scenario == scenario]
        keys = list(dict.fromkeys(k for _, r in rows for k in r.figures))
        out.append(f"### {scenario}\n")
        out.append("| case | variant | " + " | ".join(keys) + " | ratios (taskmgr / baseline) |")
        out.append("|---" * (len(keys) + 3) + "|")
        for i, r in rows:
            cells = [_cell(r.figures.get(k)) for k in keys]
            note = notes.get(i, "")
            if r.note:
                note = f"{note} ({r.note})" if note else f"({r.note})"
            out.append(f"| {r.case} | {r.variant} | " + " | ".join(cells) + f" | {note} |")
        out.append("")
    return "\n".join(out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100:
        return f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average at start {load[0]:.2f}"
    )


def plan(quick: bool, only: Sequence[str]) -> list[tuple[str, Callable[[], list[Result]]]]:
    from benchmarks import (
        celery_dispatch,
        fire_rate,
        http_load,
        instances,
        resources,
        saturation,
        scale,
        tasks,
    )

    pg = postgres_available()
    redis = redis_available()
    kinds = ["sqlite", "postgres"] if pg else ["sqlite"]
    steps: list[tuple[str, Callable[[], list[Result]]]] = []
    if quick:
        steps.append(("fire-rate", lambda: fire_rate.run([2000], 3.0, ["sqlite"])))
        if pg:
            steps.append(("fire-rate", lambda: fire_rate.run([1000], 3.0, ["postgres"])))
        steps.append(
            (
                "saturation",
                lambda: saturation.run(
                    [1000, 4000], 2.0, kinds, instances=(1,), peers=("APScheduler 3 (memory)",)
                ),
            )
        )
        steps.append(("scale", lambda: scale.run([1000, 10000], 200, 2.0, celery_max=10000)))
        if pg and redis:
            steps.append(("celery", lambda: celery_dispatch.run(300)))
        steps.append(("http", lambda: http_load.run(200)))
        if pg:
            steps.append(("instances", lambda: instances.run(1000, 3.0)))
        steps.append(("tasks", lambda: tasks.run(300, 5000, 2000, 50, kinds)))
        steps.append(
            ("resources", lambda: resources.run([10], [100], kinds, window=10.0, rate_window=5.0))
        )
    else:
        steps.append(("fire-rate", lambda: fire_rate.run([250, 500, 1000, 2000, 4000], 5.0, kinds)))
        steps.append(
            (
                "saturation",
                lambda: saturation.run(
                    [1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000], 4.0, kinds
                ),
            )
        )
        steps.append(
            ("scale", lambda: scale.run([1000, 10000, 100000], 500, 5.0, celery_max=10000))
        )
        if pg and redis:
            steps.append(("celery", lambda: celery_dispatch.run(2000, samples=200)))
        steps.append(("http", lambda: http_load.run(1000)))
        if pg:
            steps.append(("instances", lambda: instances.run(2000, 5.0)))
        steps.append(("tasks", lambda: tasks.run(2000, 20000, 10000, 200, kinds)))
        steps.append(
            (
                "resources",
                lambda: resources.run(
                    [10, 1000, 10000], [100, 1000], kinds, window=30.0, rate_window=10.0, repeat=3
                ),
            )
        )
    return [(name, step) for name, step in steps if not only or name in only]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=[], help="scenarios")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    if not postgres_available():
        print("PostgreSQL not reachable: its scenarios are skipped", flush=True)
    if not redis_available():
        print("Redis not reachable: the Celery scenario is skipped", flush=True)
    began = time.perf_counter()
    results: list[Result] = []
    for name, step in plan(args.quick, args.only):
        print(f"running {name} ...", flush=True)
        results.extend(step())
    print()
    print(table(results))
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
