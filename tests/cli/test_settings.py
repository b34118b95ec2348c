"""Settings: argument > environment > default; the database password never shows."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskmgr import InvalidInputError, SchedulerService, TaskmgrSettings
from taskmgr.cli import main
from taskmgr.settings import settings_table

SECRET = "s3cr3t-pw"
URL = f"postgresql+psycopg://user:{SECRET}@127.0.0.1:1/db"  # nothing listens on port 1
DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLL_INTERVAL", "HEARTBEAT_TIMEOUT", "DATABASE_URL", "TABLE_PREFIX", "APP"):
        monkeypatch.delenv(f"TASKMGR_{name}", raising=False)


def test_argument_over_environment_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SchedulerService("sqlite://").poll_interval == 1.0  # default
    monkeypatch.setenv("TASKMGR_POLL_INTERVAL", "7")
    monkeypatch.setenv("TASKMGR_HEARTBEAT_TIMEOUT", "30")
    monkeypatch.setenv("TASKMGR_TABLE_PREFIX", "envpfx_")
    from_env = SchedulerService("sqlite://")
    assert from_env.poll_interval == 7.0
    assert from_env.heartbeat_timeout == 30.0
    assert from_env.storage.tables.jobs.name == "envpfx_jobs"  # type: ignore[attr-defined]
    assert SchedulerService("sqlite://", poll_interval=2).poll_interval == 2.0
    given = TaskmgrSettings(poll_interval=3)
    assert SchedulerService("sqlite://", settings=given).poll_interval == 3.0
    assert SchedulerService("sqlite://", settings=given, poll_interval=4).poll_interval == 4.0
    assert SchedulerService("sqlite://", settings=given).heartbeat_timeout == 30.0  # env


def test_bad_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMGR_POLL_INTERVAL", "soon")
    with pytest.raises(InvalidInputError, match="TASKMGR_POLL_INTERVAL"):
        SchedulerService("sqlite://")
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: poll_interval: Input should be a valid number")
    assert result.stderr.endswith("(env TASKMGR_POLL_INTERVAL)\n")


def test_the_password_never_shows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TASKMGR_DATABASE_URL", URL)
    settings = TaskmgrSettings()
    assert settings.url() == URL
    for text in (repr(settings), str(settings), json.dumps(settings.redacted())):
        assert SECRET not in text
        assert "user:***@127.0.0.1" in text
    shown = CliRunner().invoke(main, ["config", "show"])
    as_json = CliRunner().invoke(main, ["config", "show", "--json"])
    assert (
        json.loads(as_json.stdout)["database_url"] == "postgresql+psycopg://user:***@127.0.0.1:1/db"
    )
    caplog.set_level(logging.DEBUG)
    service = SchedulerService(settings=settings)
    health = service.health()
    assert not health.ok
    probe = CliRunner().invoke(main, ["healthcheck", "--json"])
    assert probe.exit_code == 1
    db = CliRunner().invoke(main, ["db", "current"])
    assert db.exit_code == 1
    for text in (
        shown.output,
        as_json.output,
        repr(service.storage),
        str(health.error),
        caplog.text,
        probe.output,
        db.output,
    ):
        assert SECRET not in text, text


def test_configuration_doc_matches_the_model() -> None:
    text = DOC.read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", text, re.S
    )
    assert match is not None, "docs/configuration.md lost its settings-table markers"
    assert match.group(1) == settings_table(), (
        "docs/configuration.md is stale: regenerate the table with "
        "taskmgr.settings.settings_table()"
    )


def test_run_time_job_defaults_and_retention_come_from_the_settings() -> None:
    from taskmgr import TaskmgrSettings
    from taskmgr.storage.memory import MemoryStorage
    from taskmgr.testing import FakeClock

    def work() -> None:
        pass

    work.__qualname__ = "work"  # a module-level function, as far as the registry can tell
    settings = TaskmgrSettings(
        timezone="Europe/Berlin", misfire_grace_time=5, max_retries=2, history_retention_days=7
    )
    service = SchedulerService(
        MemoryStorage(), settings=settings, clock=FakeClock(), background=False
    )
    job = service.create_job("nightly", work, cron="0 2 * * *")
    assert job.trigger.timezone == "Europe/Berlin"  # type: ignore[union-attr]
    assert job.misfire_grace_time == 5 and job.max_retries == 2
    explicit = service.create_job("other", work, cron="0 2 * * *", timezone="UTC", max_retries=0)
    assert explicit.trigger.timezone == "UTC" and explicit.max_retries == 0  # type: ignore[union-attr]
    with service:
        assert "taskmgr.retention" in {j.key for j in service.list_jobs()}
    plain = SchedulerService(
        MemoryStorage(), settings=TaskmgrSettings(), clock=FakeClock(), background=False
    )
    with plain:
        assert "taskmgr.retention" not in {j.key for j in plain.list_jobs()}  # opt-in
