"""``taskmgr windows list|add|delete`` on a real database: windows added, shown and
deleted, each refusal told with nothing stored, every change in the audit log with
source ``cli``; a job's exclusion dates in ``jobs show``."""

from __future__ import annotations

import pytest

from taskmgr.cli.loader import load_service
from tests.cli.conftest import Cli

ONCE = ["--start", "2099-01-01T00:00:00Z", "--end", "2099-01-01T02:00:00+01:00"]


def _job(cli: Cli) -> str:
    """The host app's job, stored by starting its service once: its key."""
    service = load_service(cli.app)
    service.start()
    service.shutdown()
    return f"{cli.app.split(':')[0]}.tick"


def test_windows_are_added_listed_and_deleted(cli: Cli) -> None:
    key = _job(cli)
    out = cli(
        "windows", "add", "sunday-db", "--weekly", "sun 02:00-04:00",
        "--timezone", "Europe/Berlin", "--reason", "database", "--actor", "ops",
    ).output  # fmt: skip
    assert out.strip() == (
        "added window 'sunday-db' (skip, every job): 0 2 * * sun for 7200s (Europe/Berlin)"
    )
    added = cli.json("windows", "add", "deploy", "--job", key, "--action", "defer", *ONCE)
    assert (added["job_key"], added["action"], added["start"], added["end"]) == (
        key,
        "defer",
        "2099-01-01T00:00:00Z",
        "2099-01-01T01:00:00Z",
    )

    listed = cli.json("windows", "list")
    assert [(w["name"], w["created_by"]) for w in listed] == [
        ("deploy", "cli"),
        ("sunday-db", "ops"),
    ]
    table = cli("windows", "list").output.splitlines()
    assert table[0].split() == ["NAME", "JOB", "ACTION", "SCHEDULE", "NOW", "REASON"]
    assert "opens 2099-01-01 00:00:00+0000" in table[1]
    assert cli.json("windows", "list", "--open") == []

    assert "deleted window 'deploy'" in cli("windows", "delete", "deploy").output
    assert [w["name"] for w in cli.json("windows", "list")] == ["sunday-db"]
    entries = cli.json("audit", "list", "--action", "add_window", "--action", "delete_window")
    assert [(e["action"], e["actor"], e["source"], e["job_key"]) for e in entries] == [
        ("delete_window", "cli", "cli", key),
        ("add_window", "cli", "cli", key),
        ("add_window", "ops", "cli", None),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2099-01-02T00:00:00Z", "--end", "2099-01-01T00:00:00Z"],
         "end: must be after start"),
        (["--start", "2020-01-01T00:00:00Z", "--end", "2020-01-02T00:00:00Z"],
         "is not in the future"),
        (["--cron", "0 2 * * *", "--duration", "60", "--timezone", "Mars/Base"],
         "unknown time zone 'Mars/Base'"),
        (["--cron", "0 2 * * *", "--duration", "0"], "duration: must be positive"),
        (["--cron", "0 * * * *", "--duration", "7200"], "its occurrences would overlap"),
        (["--weekly", "sunday"], "weekly: must be days and times"),
        (["--job", "ghost", "--cron", "0 2 * * *", "--duration", "60"], "no job with key 'ghost'"),
        (["--weekly", "sun 01:30-02:30", "--timezone", "Europe/Berlin"],
         "overlaps the service-wide window 'sunday-db'"),
        ([], "needs start and end (one-off) or cron and duration (recurring)"),
    ],
)  # fmt: skip
def test_each_bad_window_is_refused_and_nothing_is_stored(
    cli: Cli, args: list[str], message: str
) -> None:
    cli("windows", "add", "sunday-db", "--weekly", "sun 02:00-04:00", "--timezone", "Europe/Berlin")
    refused = cli("windows", "add", "other", *args, code=1)
    assert message in refused.stderr, refused.stderr
    assert [w["name"] for w in cli.json("windows", "list")] == ["sunday-db"]
    assert len(cli.json("audit", "list", "--action", "add_window")) == 1


def test_a_taken_name_and_an_unknown_window_are_refused(cli: Cli) -> None:
    cli("windows", "add", "w", *ONCE)
    assert "already exists" in cli("windows", "add", "w", *ONCE, code=1).stderr
    assert "no maintenance window named 'ghost'" in cli("windows", "delete", "ghost", code=1).stderr
    assert "with an offset" in cli("windows", "add", "x", "--start", "2099-01-01", code=2).stderr


def test_jobs_show_tells_the_exclusion_dates(cli: Cli) -> None:
    key = _job(cli)
    service = load_service(cli.app)
    try:
        service.update_job(key, exclude_dates=["2099-12-25", "2099-01-01"])
    finally:
        service.close()
    shown = cli("jobs", "show", key).output
    assert "excluded dates  2099-01-01, 2099-12-25" in shown
    assert cli.json("jobs", "show", key)["exclude_dates"] == ["2099-01-01", "2099-12-25"]
