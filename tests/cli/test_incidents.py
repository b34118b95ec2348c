"""``taskmgr incidents list`` and what open incidents do to ``taskmgr healthcheck``:
exit 2 while any is open (1 stays "unhealthy"), 0 again with --ignore-incidents or
once they resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskmgr.core.alerts import AlertDefaults
from taskmgr.core.models import JobDefinition, JobSource, JobState
from taskmgr.core.triggers import Interval
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from tests.cli.conftest import Cli


def test_open_incidents_are_listed_and_make_the_healthcheck_exit_2(cli: Cli) -> None:
    # the healthcheck reads the real clock: the job's next slot must lie ahead of it
    now = datetime.now(UTC)
    cli("db", "upgrade")
    assert cli("incidents", "list").output.strip() == "(none)"
    storage = SQLAlchemyStorage(
        cli.env["TASKMGR_DATABASE_URL"], schema=cli.env.get("TASKMGR_DB_SCHEMA")
    )
    storage.open()
    try:
        storage.add_job(
            JobDefinition(
                key="cli.silent",
                func="x.y",
                trigger=Interval(timedelta(hours=1)),
                alert_no_success_within=3600,
            ),
            source=JobSource.API,
            state=JobState.ACTIVE,
            next_run_at=now + timedelta(minutes=5),
            fingerprint=None,
            now=now - timedelta(hours=2),
        )
        changes = storage.evaluate_alerts(now=now, defaults=AlertDefaults())
        assert changes is not None and len(changes.opened) == 1
        assert "no success within 3600s" in cli("jobs", "show", "cli.silent").output

        [listed] = cli.json("incidents", "list", "--open")
        assert (listed["job_key"], listed["rule"], listed["resolved_at"]) == (
            "cli.silent",
            "no_success",
            None,
        )
        table = cli("incidents", "list").output.splitlines()
        assert table[0].split() == ["ID", "JOB", "RULE", "OPENED", "RESOLVED", "WEBHOOK", "MESSAGE"]
        assert "cli.silent" in table[1] and " open " in table[1]
        assert cli.json("incidents", "list", "--job", "other") == []

        result = cli("healthcheck", code=2)
        assert result.output.startswith("alerting: 1 open incident(s)")
        health = cli.json("healthcheck", code=2)
        assert (health["healthy"], health["alerting"], health["open_incidents"]) == (True, True, 1)
        assert cli("healthcheck", "--ignore-incidents").output.startswith("healthy")
        # unhealthy wins over alerting: 1
        cli("healthcheck", "--min-instances", "1", code=1)

        # a change of the job starts its window again: the incident resolves
        storage.update_job("cli.silent", {"description": "watched"}, now=now)
        changes = storage.evaluate_alerts(now=now, defaults=AlertDefaults())
        assert changes is not None and len(changes.resolved) == 1
        cli("healthcheck")
        assert cli.json("incidents", "list", "--open") == []
        assert len(cli.json("incidents", "list")) == 1
    finally:
        storage.close()
