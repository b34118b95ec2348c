"""Each operator command against a real database, in both output modes."""

from __future__ import annotations

import pytest

from taskmgr.cli.loader import load_service
from taskmgr.storage.sqlalchemy import migrate
from tests.cli.conftest import Cli


def _started_once(cli: Cli) -> str:
    """Run the host app once so its job and instance are in the database."""
    service = load_service(cli.app)
    service.start()
    service.shutdown()
    return f"{cli.app.split(':')[0]}.tick"


def test_jobs_executions_instances(cli: Cli) -> None:
    key = _started_once(cli)
    listed = cli.json("jobs", "list")
    assert [job["key"] for job in listed] == [key]
    assert key in cli("jobs", "list").output  # the human table
    assert cli.json("jobs", "show", key)["state"] == "active"
    assert "every 3600s" in cli("jobs", "show", key).output

    assert cli.json("jobs", "pause", key)["state"] == "paused"
    assert cli.json("jobs", "list", "--state", "paused")[0]["key"] == key
    assert cli.json("jobs", "resume", key, "--app", cli.app)["state"] == "active"

    queued = cli.json("jobs", "trigger", key, "--app", cli.app)
    assert queued["trigger"] == "manual"
    assert queued["actor"] == "cli"
    found = cli.json("executions", "list", "--job", key, "--status", queued["status"])
    assert [e["id"] for e in found] == [queued["id"]]
    assert cli.json("executions", "list", "--status", "failed") == []
    assert cli.json("executions", "show", queued["id"])["job_key"] == key
    assert queued["id"] in cli("executions", "list").output

    instances = cli.json("instances", "list", "--app", cli.app)
    assert len(instances) == 1
    assert instances[0]["status"] == "stopped"
    assert "STATUS" in cli("instances", "list").output


def test_not_found_and_usage_errors(cli: Cli) -> None:
    _started_once(cli)
    missing = cli("jobs", "show", "nope", code=1)
    assert missing.stderr.count("\n") == 1
    assert "nope" in missing.stderr
    assert cli("executions", "show", "nope", code=1).stderr.startswith("Error:")
    assert "needs --app" in cli("jobs", "trigger", "x", code=2).stderr
    cli("executions", "list", "--status", "bogus", code=2)
    cli("jobs", "list", "--no-such-option", code=2)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module_xyz:service", "module 'no_such_module_xyz' not found"),
        ("json:nothing", "has no attribute 'nothing'"),
        ("json:__name__", "is a str, not a SchedulerService"),
        ("missing-colon", "must look like 'package.module:service'"),
    ],
)
def test_bad_app_is_one_clear_line(cli: Cli, app: str, message: str) -> None:
    result = cli("jobs", "list", "--app", app, code=1)
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    assert message in result.stderr


def test_db_commands(cli: Cli) -> None:
    head = migrate.head_revision()  # the newest packaged revision
    assert cli.json("db", "current") == {
        "current": None,
        "head": head,
        "state": "empty",
        "ok": False,
    }
    assert "run `taskmgr db upgrade`" in cli("db", "check", code=1).output
    assert cli.json("db", "upgrade") == {"from": None, "to": head, "applied": True}
    assert f"already at {head}" in cli("db", "upgrade").output
    assert cli.json("db", "check")["ok"] is True
    assert head in cli("db", "current").output
    revisions = [r["revision"] for r in cli.json("db", "history")]
    assert revisions[:3] == ["tm0001", "tm0002", "tm0003"]
    assert revisions == sorted(revisions) and revisions[-1] == head
    assert cli.json("db", "downgrade", "--to", "tm0001") == {
        "from": head,
        "to": "tm0001",
        "applied": True,
    }
    assert "already at tm0001" in cli("db", "downgrade", "--to", "tm0001").output
    assert "downgraded tm0001 -> empty database" in cli("db", "downgrade", "--to", "base").output
    assert cli.json("db", "upgrade")["to"] == head
    sql = cli.json("db", "sql")["sql"]
    assert "CREATE TABLE" in sql
    assert "taskmgr_alembic_version" in sql
    assert "CREATE TABLE" in cli("db", "sql", "--dialect", "sqlite").output


def test_healthcheck(cli: Cli) -> None:
    cli("db", "upgrade")
    assert cli.json("healthcheck")["healthy"] is True
    assert cli("healthcheck", "--app", cli.app).output.startswith("healthy")
    result = cli.json("healthcheck", "--min-instances", "1", code=1)
    assert result["healthy"] is False
    assert "want 1" in cli("healthcheck", "--min-instances", "1", code=1).output


def test_healthcheck_fails_when_the_database_is_unreachable(cli: Cli) -> None:
    result = cli("healthcheck", "--database-url", "sqlite:////nonexistent/dir/x.db", code=1)
    assert result.output.startswith("unhealthy:")
    assert result.output.count("\n") == 1


def test_defer_and_cancel(cli: Cli) -> None:
    key = _started_once(cli)
    deferred = cli.json("jobs", "defer", key, "--app", cli.app, "--delay", "600")
    assert deferred["trigger"] == "deferred" and deferred["status"] == "pending"
    assert deferred["actor"] == "cli"
    keyed = [
        cli.json("jobs", "defer", key, "--app", cli.app, "--idempotency-key", "once")["id"]
        for _ in range(2)
    ]
    assert keyed[0] == keyed[1]
    assert "deferred execution" in cli("jobs", "defer", key, "--app", cli.app).output
    assert "not JSON" in cli("jobs", "defer", key, "--app", cli.app, "--kwargs", "{", code=2).stderr
    assert (
        "JSON object"
        in cli("jobs", "defer", key, "--app", cli.app, "--kwargs", "[]", code=2).stderr
    )
    reserved = cli("jobs", "defer", key, "--app", cli.app, "--kwargs", '{"delay": 1}', code=2)
    assert "delay" in reserved.stderr
    unknown = cli("jobs", "defer", key, "--app", cli.app, "--kwargs", '{"x": 1}', code=1)
    assert "signature" in unknown.stderr

    cancelled = cli.json("executions", "cancel", deferred["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["error_message"] == "cancelled by cli"
    assert "only a pending one" in cli("executions", "cancel", deferred["id"], code=1).stderr
