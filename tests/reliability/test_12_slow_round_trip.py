"""A slow round trip must not poison the clock (docs/deployment.md, "Time").

One instance reaches PostgreSQL through a proxy that blackholes it for a while:
every byte is held, the sockets stay open. The heartbeat's reading of the database's
clock that waited all that time must not move the instance's clock: before the fix,
the reading's midpoint made it half the outage fast, so right after the outage it
started slots early and marked slots that were not yet due as ``missed``.

The verdicts use the database's own clock: columns the test adds to the executions
table record ``clock_timestamp()`` when each row is inserted and when a row's status
becomes ``missed``. No slot may be missed before its slot by that clock, and a slot is
missed for lateness only once it is later than its grace time by that clock: a run
claimed in time may still be judged late when it starts (the grace time is judged at
the actual start), so the verdict's time is when ``missed`` was written, not when the
row was. The jobs record when they began (PostgreSQL runs on
this host: the same clock): none may begin before its slot. (A running row may be
written before its slot: the loop claims up to its look-ahead early and starts the run
from a timer at the slot's time.)
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from taskmgr import Interval, SchedulerService, current_execution
from taskmgr.scheduling.loop import LOOKAHEAD
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from tests.reliability.blackhole import BlackholeProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOBS = 5
GRACE = 0.25
#: How long the network holds everything: the poisoned clock was half of it fast.
OUTAGE = 2.0

_starts: list[tuple[datetime, datetime]] = []  # (scheduled_for, began)
_ran = threading.Condition()


def tick() -> None:
    began = datetime.now(UTC)
    context = current_execution()
    assert context is not None
    with _ran:
        _starts.append((context.scheduled_for, began))
        _ran.notify_all()


def _wait_for_starts(after: datetime, count: int, timeout: float) -> bool:
    """Whether ``count`` slots scheduled after ``after`` started within ``timeout``."""
    with _ran:
        return _ran.wait_for(
            lambda: sum(slot > after for slot, _ in _starts) >= count, timeout=timeout
        )


@pytest.mark.timeout(60)
def test_a_blackholed_database_connection_does_not_make_slots_early_or_missed(
    postgres_url: str,
) -> None:
    _starts.clear()
    url = sa.make_url(postgres_url)
    direct = sa.create_engine(url, poolclass=sa.NullPool)
    with BlackholeProxy(url.port or 5432, target_host=url.host or "127.0.0.1") as proxy:
        storage = SQLAlchemyStorage(
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        )
        service = SchedulerService(
            storage,
            jobs=[tick],
            heartbeat_interval=0.25,
            heartbeat_timeout=10.0,  # the outage must not stop it claiming afterwards
            sweep_interval=1.0,
            poll_interval=0.1,
        )
        try:
            service.open()
            table = storage.tables.executions.name
            with direct.begin() as conn:  # the database's clock at each row's insert ...
                conn.exec_driver_sql(
                    f"ALTER TABLE {table} ADD COLUMN witness_written_at timestamptz "
                    "NOT NULL DEFAULT clock_timestamp()"
                )
                # ... and when it becomes missed (at the claim, or at the run's start)
                conn.exec_driver_sql(
                    f"ALTER TABLE {table} ADD COLUMN witness_missed_at timestamptz"
                )
                conn.exec_driver_sql(
                    "CREATE FUNCTION witness_missed() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.status = 'missed' AND NEW.witness_missed_at IS NULL THEN "
                    "NEW.witness_missed_at := clock_timestamp(); END IF; RETURN NEW; END $$"
                )
                conn.exec_driver_sql(
                    f"CREATE TRIGGER witness_missed BEFORE INSERT OR UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION witness_missed()"
                )
            anchor = datetime.now(UTC).replace(microsecond=0)
            for i in range(JOBS):  # one slot every 1/JOBS s across the jobs
                service.create_job(
                    f"tick-{i}",
                    tick,
                    trigger=Interval(1, start=anchor + i * timedelta(seconds=1 / JOBS)),
                    misfire_grace_time=GRACE,
                )
            service.start()
            assert _wait_for_starts(anchor, 2, timeout=10)

            with proxy.blackhole():
                time.sleep(OUTAGE)  # the outage itself: how long the network is gone
            healed = datetime.now(UTC)

            # it fires again: a few slots after the outage start
            assert _wait_for_starts(healed + timedelta(seconds=0.3), 3, timeout=10)
        finally:
            service.shutdown()
            storage.close()

    with direct.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT job_key, status, scheduled_for, witness_written_at, witness_missed_at, "
            f"EXTRACT(EPOCH FROM witness_written_at - scheduled_for) AS late, "
            f"EXTRACT(EPOCH FROM witness_missed_at - scheduled_for) AS missed_late, "
            f"error_message FROM {table} ORDER BY scheduled_for"
        ).all()
    direct.dispose()

    early = [row for row in rows if row.status == "missed" and row.missed_late < 0]
    assert early == [], "rows missed before their slot"
    ahead = [row for row in rows if row.late < -LOOKAHEAD - 0.05]  # claimed too early
    assert ahead == [], "rows written long before their slot"
    missed_early = [
        row
        for row in rows
        if row.status == "missed"
        and "grace" in (row.error_message or "")
        and row.missed_late <= GRACE
    ]
    assert missed_early == [], "slots missed before they were beyond their grace time"
    started_early = [(slot, began) for slot, began in _starts if began < slot]
    assert started_early == []
    assert any(row.status == "success" and row.scheduled_for > healed for row in rows)
