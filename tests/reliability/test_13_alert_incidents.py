"""Alerts from the schedule, on three scheduler processes sharing one PostgreSQL
database (docs/alerting-and-maintenance.md; docs/guarantees.md, G9).

A 1 s job with ``alert_failures=2`` fails, then goes on failing, then recovers. Every
process evaluates the rules every 0.2 s and has the same webhook. Exactly one incident
is opened for the breach (not one per process, not one per failure), by one process;
the webhook gets exactly one POST for its opening; the incident resolves once the job
succeeds, with exactly one more POST; nothing else is opened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskmgr import verify_webhook_signature
from tests.alerts.cluster_jobs import FAIL_FILE, KEY
from tests.alerts.hook import serve_hook
from tests.reliability.harness import read_executions, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SECRET = "cluster-secret"


def _incidents(url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("taskmgr_incidents"):
                return []
            rows = conn.execute(sa.text("SELECT * FROM taskmgr_incidents ORDER BY id"))
            return [dict(row) for row in rows.mappings()]
    finally:
        engine.dispose()


def _runs(url: str, status: str) -> int:
    return sum(1 for row in read_executions(url) if row.job_key == KEY and row.status == status)


@pytest.mark.timeout(180)
def test_three_processes_open_one_incident_and_send_one_webhook_per_change(
    postgres_url: str, make_cluster, summary, tmp_path: Path
) -> None:
    url = postgres_url
    marker = tmp_path / "failing"
    marker.write_text("the job fails while this file exists")
    with serve_hook() as hook:
        env = {
            FAIL_FILE: str(marker),
            "TASKMGR_ALERT_WEBHOOK_URL": hook.url,
            "TASKMGR_ALERT_WEBHOOK_SECRET": SECRET,
            "TASKMGR_ALERT_INTERVAL": "0.2",
        }
        cluster = make_cluster(url)
        procs = cluster.start(3, env=env, args=["--module", "tests.alerts.cluster_jobs"])

        opened = wait_for("the incident", lambda: _incidents(url), timeout=60)
        wait_for("the webhook's first POST", hook.arrived.is_set, timeout=60)
        failed_at_open = _runs(url, "failed")
        # it goes on failing for several more runs, evaluated by every process meanwhile
        wait_for(
            "more failed runs",
            lambda: _runs(url, "failed") >= failed_at_open + 4,
            timeout=60,
        )
        assert len(_incidents(url)) == 1
        assert len(hook.requests) == 1

        marker.unlink()
        resolved = wait_for(
            "the incident to resolve",
            lambda: [i for i in _incidents(url) if i["resolved_at"] is not None],
            timeout=60,
        )
        wait_for("the webhook's second POST", lambda: len(hook.requests) >= 2, timeout=60)
        succeeded = _runs(url, "success")
        wait_for(  # a few more evaluations of the recovered job
            "more successful runs", lambda: _runs(url, "success") >= succeeded + 3, timeout=60
        )
        incidents = _incidents(url)
        requests = list(hook.requests)
        cluster.stop()

    assert len(opened) == 1 and len(incidents) == 1
    [incident] = incidents
    assert (incident["job_key"], incident["rule"]) == (KEY, "failing")
    assert incident["id"] == resolved[0]["id"]
    assert incident["notify_state"] == "delivered"
    assert [r["headers"]["X-Taskmgr-Delivery"] for r in requests] == [
        f"{incident['id']}:incident.opened",
        f"{incident['id']}:incident.resolved",
    ]
    for request in requests:
        headers = request["headers"]
        assert verify_webhook_signature(
            SECRET,
            request["body"],
            timestamp=headers["X-Taskmgr-Timestamp"],
            signature=headers["X-Taskmgr-Signature"],
        )
    assert [json.loads(r["body"])["event"] for r in requests] == [
        "incident.opened",
        "incident.resolved",
    ]
    # opened and resolved by one process each (the one holding the alert lock)
    logs = [proc.stderr() for proc in procs]
    assert sum(log.count(f"incident {incident['id']} opened") for log in logs) == 1
    summary(
        "alert_incidents",
        processes=len(procs),
        incidents=len(incidents),
        webhook_posts=len(requests),
        failed_runs=_runs(url, "failed"),
    )
