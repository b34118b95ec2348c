"""The CLI tells what is true of the app it is pointed at: ``config show --app`` shows
what the app's service was built with (its dispatcher, storage and timings, not the
environment's), and a paused job shows no next run in ``jobs list`` and ``jobs show``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from taskmgr.cli import main
from taskmgr.cli.loader import load_service
from tests.cli.conftest import Cli

SECRET = "app-s3cret"

CELERY_APP = f"""
from celery import Celery

from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher
from taskmgr.storage import SQLAlchemyStorage

celery_app = Celery("billing", broker="memory://", set_as_current=False)
service = SchedulerService(
    SQLAlchemyStorage(
        "postgresql+psycopg://app:{SECRET}@db.internal:5432/billing",
        table_prefix="bill_",
        schema="scheduling",
    ),
    dispatcher=CeleryDispatcher(celery_app),
    poll_interval=0.25,
    heartbeat_interval=2,
    heartbeat_timeout=9,
    background=False,
)
"""

MEMORY_APP = """
from taskmgr import SchedulerService
from taskmgr.storage import MemoryStorage

service = SchedulerService(MemoryStorage(), background=False)
"""


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    module = f"truthapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{module}:service"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment that says something else than the apps: inline, SQLite, 1 s."""
    values = {
        "TASKMGR_APP": "",
        "TASKMGR_DISPATCHER": "inline",
        "TASKMGR_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}",
        "TASKMGR_POLL_INTERVAL": "1",
        "TASKMGR_DB_SCHEMA": "",
        "TASKMGR_TABLE_PREFIX": "taskmgr_",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _show(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["config", "show", *args], env=env, catch_exceptions=False)


def test_config_show_tells_what_a_celery_app_runs_with(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, monkeypatch, CELERY_APP)
    shown = _show(env, "--app", app, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert {key: data[key] for key in ("storage", "dispatcher", "celery_app")} == {
        "storage": "sqlalchemy",
        "dispatcher": "celery",
        "celery_app": "billing",
    }
    assert data["database_url"] == "postgresql+psycopg://app:***@db.internal:5432/billing"
    assert (data["table_prefix"], data["db_schema"]) == ("bill_", "scheduling")
    assert (data["poll_interval"], data["heartbeat_interval"], data["heartbeat_timeout"]) == (
        0.25,
        2,
        9,
    )
    human = _show(env, "--app", app)
    assert human.exit_code == 0, human.output
    lines = {line.split()[0]: line.split()[1] for line in human.output.splitlines()}
    assert lines["dispatcher"] == "celery"
    assert lines["database_url"].startswith("postgresql+psycopg://app:***@")
    for output in (shown.output, human.output):
        assert SECRET not in output

    # without --app, the environment's settings, as before
    plain = json.loads(_show(env, "--json").stdout)
    assert (plain["dispatcher"], plain["poll_interval"]) == ("inline", 1.0)
    assert plain["database_url"] == env["TASKMGR_DATABASE_URL"]


def test_config_show_of_an_app_on_memory_storage(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, monkeypatch, MEMORY_APP)
    data = json.loads(_show(env, "--app", app, "--json").stdout)
    assert data["storage"] == "memory"
    assert data["database_url"] is None and data["table_prefix"] is None
    assert data["dispatcher"] == "inline" and data["celery_app"] is None


def test_an_app_and_another_database_url_are_refused_together(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, monkeypatch, MEMORY_APP)
    for command in (["config", "show"], ["jobs", "list"]):
        result = CliRunner().invoke(
            main, [*command, "--app", app, "--database-url", "sqlite:///other.db"], env=env
        )
        assert result.exit_code == 2, result.output
        assert "--database-url and --app exclude each other" in result.stderr
    # TASKMGR_DATABASE_URL in the environment is not a contradiction: apps read it too
    assert json.loads(_show(env, "--app", app, "--json").stdout)["storage"] == "memory"
    # and a --database-url typed on the command line wins over TASKMGR_APP
    other = f"sqlite:///{tmp_path / 'other.db'}"
    typed = _show({**env, "TASKMGR_APP": app}, "--database-url", other, "--json")
    assert json.loads(typed.stdout)["database_url"] == other
    from_env = _show({**env, "TASKMGR_APP": app}, "--json")
    assert json.loads(from_env.stdout)["storage"] == "memory"


def test_a_paused_job_shows_no_next_run(cli: Cli) -> None:
    service = load_service(cli.app)
    service.start()
    service.shutdown()
    key = f"{cli.app.split(':')[0]}.tick"
    [active] = cli.json("jobs", "list")
    assert active["next_run_at"] is not None

    assert cli.json("jobs", "pause", key)["next_run_at"] is None
    [listed] = cli.json("jobs", "list")
    assert (listed["state"], listed["next_run_at"]) == ("paused", None)
    assert cli.json("jobs", "list", "--app", cli.app)[0]["next_run_at"] is None
    assert cli.json("jobs", "show", key)["next_run_at"] is None
    table = cli("jobs", "list").output.splitlines()
    header, row = table[0], table[1]
    next_column = header.index("NEXT RUN")
    assert row[next_column:].split()[0] == "-"
    shown = {line.split()[0]: line for line in cli("jobs", "show", key).output.splitlines()}
    assert shown["next"].split() == ["next", "run", "-"]

    resumed = cli.json("jobs", "resume", key, "--app", cli.app)
    assert resumed["next_run_at"] is not None
    assert cli.json("jobs", "list")[0]["next_run_at"] == resumed["next_run_at"]
