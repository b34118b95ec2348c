"""``taskmgr audit list``: the audit log in a table or as JSON, newest first, filtered by
job and action; the CLI's own changes are recorded with source ``cli``."""

from __future__ import annotations

from tests.cli.conftest import Cli
from tests.cli.test_commands import _started_once


def test_audit_list(cli: Cli) -> None:
    key = _started_once(cli)  # code sync: the job's create
    cli("jobs", "pause", key, "--actor", "ops")
    cli("jobs", "resume", key, "--app", cli.app)
    run = cli.json("jobs", "trigger", key, "--app", cli.app)
    cli("executions", "cancel", run["id"], "--actor", "ops")

    log = cli.json("audit", "list")
    assert [(e["action"], e["source"], e["actor"]) for e in log] == [
        ("cancel", "cli", "ops"),
        ("trigger", "cli", "cli"),
        ("resume", "cli", "cli"),
        ("pause", "cli", "ops"),
        ("create", "code", None),
    ]
    assert log[0]["execution_id"] == run["id"]
    paused = log[3]["details"]["changes"]
    assert set(paused) == {"state", "paused_by", "paused_at"}  # who paused it, since when
    assert paused["state"] == {"before": "active", "after": "paused"}
    assert paused["paused_by"] == {"before": None, "after": "ops"}
    assert [e["action"] for e in cli.json("audit", "list", "--job", key, "--limit", "2")] == [
        "cancel",
        "trigger",
    ]
    assert cli.json("audit", "list", "--action", "pause", "--action", "create") == [log[3], log[4]]
    assert cli.json("audit", "list", "--job", "no.such.job") == []

    table = cli("audit", "list").output.splitlines()
    assert table[0].split() == [
        "ID",
        "AT",
        "ACTOR",
        "SOURCE",
        "ACTION",
        "JOB",
        "EXECUTION",
        "DETAILS",
    ]
    assert len(table) == 6
    pause = next(line for line in table if " pause " in line)
    assert (
        " ops " in pause
        and " cli " in pause
        and 'state: "active" -> "paused"; paused_by: null -> "ops"' in pause
    )
    assert "(none)" in cli("audit", "list", "--job", "no.such.job").output
    assert "'rename' is not one of" in cli("audit", "list", "--action", "rename", code=2).stderr
    assert "--limit" in cli("audit", "list", "--limit", "0", code=2).stderr
