"""Fixtures of the fault-injection suite: a fresh PostgreSQL database per scenario,
and the per-scenario summary line (printed, kept as a JSON line, attached to the
test report with ``record_property`` and repeated at the end of the run)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.reliability import SUMMARY_PROPERTY
from tests.reliability.harness import Cluster, Timings
from tests.services import require_postgres

Summary = Callable[..., dict[str, Any]]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the test server; dropped afterwards."""
    base = require_postgres()
    name = f"taskmgr_rel_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def timings() -> Timings:
    return Timings()


@pytest.fixture
def make_cluster(tmp_path: Path, timings: Timings) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(url, witness_url)``: every process it starts is stopped at the end."""
    clusters: list[Cluster] = []

    def make(url: str, witness_url: str | None = None, name: str = "run") -> Cluster:
        workdir = tmp_path / f"{name}{len(clusters)}"
        workdir.mkdir()
        cluster = Cluster(url, witness_url or url, workdir, timings)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop(timeout=10)


@pytest.fixture
def summary(
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Summary:
    """``summary(scenario, fires=..., duplicates=..., ...)``: one line per scenario."""
    path = tmp_path_factory.getbasetemp() / "reliability.jsonl"

    def write(scenario: str, **fields: Any) -> dict[str, Any]:
        record = {"scenario": scenario, **fields}
        line = "RELIABILITY " + " ".join(f"{k}={_fmt(v)}" for k, v in record.items())
        print(line, flush=True)
        record_property(SUMMARY_PROPERTY, line)  # repeated at the end of the run
        with path.open("a") as stream:
            stream.write(json.dumps(record, default=str) + "\n")
        for key, value in record.items():
            record_property(key, value)
        return record

    return write


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)
