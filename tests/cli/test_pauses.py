"""``taskmgr jobs pause --reason --until``, ``queues pause|resume``, ``pause``,
``resume``, ``pauses`` and ``jobs backfill``, on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from taskmgr.cli.loader import load_service
from tests.cli.conftest import Cli

MINUTE = timedelta(minutes=1)
CRON_APP = """
from taskmgr import SchedulerService, scheduled_job

@scheduled_job(cron="* * * * *")
def minutely():
    return 1

service = SchedulerService(jobs=[minutely], background=False)
"""


def _cron_app(cli: Cli) -> tuple[str, str]:
    """A host app with an every-minute job, started once: (app, job key)."""
    module = cli.app.split(":")[0] + "_cron"
    (Path.cwd() / f"{module}.py").write_text(CRON_APP)
    service = load_service(f"{module}:service")
    service.start()
    service.shutdown()
    return f"{module}:service", f"{module}.minutely"


def test_pause_a_job_with_a_reason_until_a_time(cli: Cli) -> None:
    _, key = _cron_app(cli)
    before = datetime.now(UTC)
    paused = cli.json("jobs", "pause", key, "--reason", "deploy freeze", "--until", "2h")
    until = datetime.fromisoformat(paused["paused_until"])
    assert before + timedelta(hours=2) <= until <= datetime.now(UTC) + timedelta(hours=2)
    assert (paused["state"], paused["paused_by"], paused["paused_reason"]) == (
        "paused",
        "cli",
        "deploy freeze",
    )
    shown = {
        " ".join(line.split()[:2]): line for line in cli("jobs", "show", key).output.splitlines()
    }
    assert shown["pause reason"].endswith(" deploy freeze") and "paused until" in shown
    assert "until" in cli("jobs", "pause", key, "--until", "2099-01-01T00:00:00Z").output

    refused = cli("jobs", "pause", key, "--until", "2020-01-01T00:00:00Z", code=1)
    assert "not in the future" in refused.stderr
    naive = cli("jobs", "pause", key, "--until", "2099-01-01T00:00:00", code=2)
    assert "with an offset" in naive.stderr
    assert cli.json("jobs", "show", key)["paused_until"] == "2099-01-01T00:00:00Z"


def test_pause_and_resume_queues_and_the_service(cli: Cli) -> None:
    out = cli("queues", "pause", "reports", "--reason", "migration", "--actor", "ops").output
    assert out.strip() == "queue 'reports' paused by ops: migration"
    service = cli.json("pause", "--reason", "incident", "--until", "30m")
    assert (service["scope"], service["name"], service["reason"]) == ("service", None, "incident")

    listed = cli.json("pauses")
    assert [(p["scope"], p["name"]) for p in listed] == [("service", None), ("queue", "reports")]
    table = cli("pauses").output.splitlines()
    assert table[0].split() == ["SCOPE", "NAME", "BY", "SINCE", "UNTIL", "REASON"]
    assert len(table) == 3
    health = cli("healthcheck", "--json", code=None).stdout
    assert '"incident"' in health

    assert cli("queues", "resume", "reports").output.strip() == "resumed queue 'reports'"
    assert "was not paused" in cli("queues", "resume", "reports").output
    assert cli("resume").output.strip() == "resumed"
    assert cli("resume").output.strip() == "the service was not paused"
    assert cli.json("pauses") == []
    assert [e["action"] for e in cli.json("audit", "list", "--limit", "4")] == [
        "resume",
        "resume",
        "pause",
        "pause",
    ]


def test_backfill_a_job(cli: Cli) -> None:
    app, key = _cron_app(cli)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = (minute - timedelta(minutes=5)).isoformat(), (minute - MINUTE).isoformat()
    needs_app = cli("jobs", "backfill", key, "--start", start, "--end", end, code=2)
    assert "needs --app" in needs_app.stderr
    too_large = cli(
        "jobs", "backfill", key, "--app", app, "--start", start, "--end", end,
        "--max-runs", "2", code=1,
    )  # fmt: skip
    assert "more than 2 slots" in too_large.stderr

    done = cli(
        "jobs", "backfill", key, "--app", app, "--start", start, "--end", end, "--actor", "ops"
    )
    assert done.output.strip() == (
        f"backfilled 5 of 5 slot(s) of {key} (0 already recorded, 0 left to the schedule)"
    )
    again = cli.json("jobs", "backfill", key, "--app", app, "--start", start, "--end", end)
    assert (again["created"], again["existing"]) == (0, 5)
    runs = cli.json("executions", "list", "--job", key, "--status", "pending")
    assert len(runs) == 5
    [entry] = cli.json("audit", "list", "--action", "backfill")
    assert (entry["actor"], entry["source"], entry["details"]["created"]) == ("ops", "cli", 5)
