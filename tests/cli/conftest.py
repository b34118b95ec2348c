"""A real database (SQLite file or a fresh PostgreSQL schema) and a host app module
for the CLI tests; commands run through click's CliRunner with the env set."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from taskmgr.cli import main
from tests.services import require_postgres

APP_SOURCE = """
from taskmgr import SchedulerService, scheduled_job

@scheduled_job(interval=3600)
def tick():
    return 1

service = SchedulerService(jobs=[tick], background=False)
"""


@dataclass
class Cli:
    env: dict[str, str]
    app: str  # module:service of a host app on this database

    def __call__(self, *args: str, code: int | None = 0) -> Result:
        result = CliRunner().invoke(main, list(args), env=self.env, catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (result.exit_code, result.output)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    env = {"TASKMGR_APP": ""}
    drop = None
    if request.param == "sqlite":
        env["TASKMGR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    else:
        url = require_postgres()
        schema = f"tmc_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url, poolclass=sa.NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        env |= {"TASKMGR_DATABASE_URL": url, "TASKMGR_DB_SCHEMA": schema}

        def drop() -> None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()

    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the app module reads them when imported
    module = f"hostapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield Cli(env, f"{module}:service")
    finally:
        if drop is not None:
            drop()
