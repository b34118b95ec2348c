"""The taskmgr tables as SQLAlchemy Core metadata.

This is the model the packaged migrations must produce (a test compares them with
Alembic's autogenerate). Only built-in column types are stored, so a host's own
migrations never need to import taskmgr; :class:`UTCDateTime` only converts values
in Python and is stored as a plain ``DateTime(timezone=True)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from taskmgr.core.cron import MAX_EXPRESSION_LENGTH
from taskmgr.core.models import MAX_CONCURRENCY_KEY, MAX_CONCURRENCY_VALUE, SLOT_TRIGGERS
from taskmgr.core.pauses import MAX_QUEUE_NAME, MAX_REASON

__all__ = [
    "IDEMPOTENCY_KEY_LENGTH",
    "NAMING_CONVENTION",
    "OPEN_INCIDENT",
    "SCHEDULED_SLOT",
    "Tables",
    "UTCDateTime",
    "build_metadata",
    "build_tables",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database.

    SQLite has no time zone type: values are stored as naive UTC text (fixed width, so
    comparisons in SQL order correctly) and made aware again when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        tzinfo = value.tzinfo
        if tzinfo is not UTC:  # the common case (taskmgr's own values) skips conversion
            if tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"naive datetime {value.isoformat()} given; taskmgr stores UTC")
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        tzinfo = value.tzinfo
        if tzinfo is None:
            return value.replace(tzinfo=UTC)
        if tzinfo is UTC:
            return value
        return value.astimezone(UTC)


#: The longest idempotency key stored.
IDEMPOTENCY_KEY_LENGTH = 255

#: The rows that are slots of a schedule: one per job and instant. Manual runs and
#: deferred tasks have their own id (``chain_id``), and any number of them may share
#: an instant; retries are told apart by their attempt.
SCHEDULED_SLOT = sa.text(
    '"trigger" IN ({})'.format(", ".join(f"'{t.value}'" for t in sorted(SLOT_TRIGGERS)))
)


#: The incidents still open: one per job and rule (a partial unique index).
OPEN_INCIDENT = sa.text('"resolved_at" IS NULL')


#: The audit log's id: 64 bits (INTEGER on SQLite, where only that is the row id).
AUDIT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.JSON:
    # none_as_null: a Python None is SQL NULL, not the JSON text 'null'.
    return sa.JSON(none_as_null=True)


class Tables:
    """The tables of one metadata, by role."""

    def __init__(self, metadata: sa.MetaData, prefix: str) -> None:
        self.metadata = metadata
        self.prefix = prefix
        key = f"{metadata.schema}.{prefix}" if metadata.schema else prefix
        self.jobs: sa.Table = metadata.tables[f"{key}jobs"]
        self.executions: sa.Table = metadata.tables[f"{key}executions"]
        self.instances: sa.Table = metadata.tables[f"{key}instances"]
        self.audit: sa.Table = metadata.tables[f"{key}audit"]
        self.pauses: sa.Table = metadata.tables[f"{key}pauses"]
        self.windows: sa.Table = metadata.tables[f"{key}windows"]
        self.incidents: sa.Table = metadata.tables[f"{key}incidents"]


def build_metadata(prefix: str = "taskmgr_", schema: str | None = None) -> sa.MetaData:
    """A fresh ``MetaData`` holding taskmgr's tables, named ``<prefix>jobs`` etc.

    Hosts can hand it to their own Alembic ``env.py`` to compare or to exclude.
    """
    metadata = sa.MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    when = UTCDateTime
    sa.Table(
        f"{prefix}jobs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_key", sa.String(255), nullable=False),
        sa.Column("func", sa.String(255), nullable=False),
        sa.Column("names", _json(), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("trigger", _json(), nullable=False),
        sa.Column("kwargs", _json(), nullable=False),
        sa.Column("max_instances", sa.Integer, nullable=False),
        sa.Column("overlap_policy", sa.String(16), nullable=False),
        sa.Column("misfire_grace_time", sa.Float, nullable=True),
        sa.Column("coalesce", sa.Boolean, nullable=False),
        sa.Column("max_retries", sa.Integer, nullable=False),
        sa.Column("retry_backoff_base", sa.Float, nullable=False),
        sa.Column("retry_backoff_max", sa.Float, nullable=False),
        sa.Column("retry_jitter", sa.Float, nullable=False),
        sa.Column("timeout", sa.Float, nullable=True),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("next_run_at", when, nullable=True),
        sa.Column("last_run_at", when, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        # A task's argument whose value groups its runs under max_instances (tm0003).
        sa.Column("concurrency_key", sa.String(MAX_CONCURRENCY_KEY), nullable=True),
        # How long this job's finished executions are kept, seconds (tm0004).
        sa.Column("retention", sa.Float, nullable=True),
        # The name of the dispatcher that runs it; NULL: the service's default (tm0005).
        sa.Column("dispatch", sa.String(128), nullable=True),
        # While paused: who paused it, why, since when, until when (tm0007).
        sa.Column("paused_by", sa.String(255), nullable=True),
        sa.Column("paused_reason", sa.String(MAX_REASON), nullable=True),
        sa.Column("paused_at", when, nullable=True),
        sa.Column("paused_until", when, nullable=True),
        # ISO dates on which its slots are skipped, in its trigger's time zone (tm0008).
        sa.Column("exclude_dates", _json(), nullable=True),
        # Alert thresholds of its own; NULL: the service's default (tm0009).
        sa.Column("alert_late_after", sa.Float, nullable=True),
        sa.Column("alert_failures", sa.Integer, nullable=True),
        sa.Column("alert_max_runtime", sa.Float, nullable=True),
        sa.Column("alert_no_success_within", sa.Float, nullable=True),
        sa.UniqueConstraint("job_key"),
        # The due-job scan: state = 'active' AND next_run_at <= now ORDER BY next_run_at.
        sa.Index(None, "state", "next_run_at"),
        # The pauses whose until has come (a claim resumes those jobs).
        sa.Index(None, "paused_until"),
    )
    sa.Table(
        f"{prefix}executions",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        # No foreign key: the history outlives a deleted job.
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("job_key", sa.String(255), nullable=False),
        sa.Column("scheduled_for", when, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("chain_id", sa.String(36), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", when, nullable=False),
        sa.Column("queued", sa.Boolean, nullable=False),
        sa.Column("kwargs", _json(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("dispatched_at", when, nullable=True),
        sa.Column("started_at", when, nullable=True),
        sa.Column("completed_at", when, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
        sa.Column("error_type", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("traceback", sa.Text, nullable=True),
        sa.Column("result_summary", _json(), nullable=True),
        sa.Column("celery_task_id", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(IDEMPOTENCY_KEY_LENGTH), nullable=True),
        # The run's group when its task has a concurrency_key: canonical JSON (tm0003).
        sa.Column("concurrency_value", sa.String(MAX_CONCURRENCY_VALUE), nullable=True),
        # The W3C trace context of the span that asked for the run (tm0006).
        sa.Column("trace_context", _json(), nullable=True),
        # G1: a scheduled slot is inserted at most once, whatever the callers do ...
        sa.Index(
            None,
            "job_id",
            "scheduled_for",
            unique=True,
            postgresql_where=SCHEDULED_SLOT,
            sqlite_where=SCHEDULED_SLOT,
        ),
        # ... and so is each attempt of a run, and a deferred run per idempotency key
        # (NULL keys are distinct, on every database).
        sa.UniqueConstraint("chain_id", "attempt"),
        sa.UniqueConstraint("job_id", "idempotency_key"),
        sa.Index(None, "status", "due_at"),  # due pending executions
        sa.Index(None, "job_id", "status"),  # active runs per job
        sa.Index(None, "created_at", "id"),  # history, keyset pagination
        sa.Index(None, "job_key", "created_at"),  # one job's history
        sa.Index(None, "status", "completed_at"),  # retention
    )
    sa.Table(
        f"{prefix}instances",
        metadata,
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", when, nullable=False),
        sa.Column("last_heartbeat", when, nullable=False),
    )
    sa.Table(
        f"{prefix}pauses",
        metadata,
        # 'queue' (name: the queue) or 'service' (name: ''); a job's pause is on its row
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(MAX_QUEUE_NAME), primary_key=True),
        sa.Column("paused_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(MAX_REASON), nullable=True),
        sa.Column("paused_at", when, nullable=False),
        sa.Column("paused_until", when, nullable=True),
    )
    sa.Table(
        f"{prefix}windows",
        metadata,
        # Maintenance windows (tm0008): one-off (starts_at, ends_at) or recurring (cron
        # in timezone, lasting duration seconds); job_key NULL: the whole service.
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("job_key", sa.String(255), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("starts_at", when, nullable=True),
        sa.Column("ends_at", when, nullable=True),
        sa.Column("cron", sa.String(MAX_EXPRESSION_LENGTH), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("reason", sa.String(MAX_REASON), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", when, nullable=False),
    )
    sa.Table(
        f"{prefix}incidents",
        metadata,
        # An alert rule's breach, open until it resolves (tm0009). Ids only grow, as the
        # audit log's: the list pages by id.
        sa.Column("id", AUDIT_ID, primary_key=True, autoincrement=True),
        # '' for the whole service. No foreign key: an incident outlives its job.
        sa.Column("job_key", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("since", when, nullable=False),
        sa.Column("opened_at", when, nullable=False),
        sa.Column("resolved_at", when, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", _json(), nullable=False),
        # The webhook's delivery: NULL (none to send), pending, delivered or failed.
        sa.Column("notify_state", sa.String(16), nullable=True),
        sa.Column("notify_attempts", sa.Integer, nullable=False),
        sa.Column("notify_next_at", when, nullable=True),
        sa.Column("notified_at", when, nullable=True),
        sa.Column("notify_error", sa.Text, nullable=True),
        # One open incident per job and rule, however many instances evaluate (G9).
        sa.Index(
            None,
            "job_key",
            "rule",
            unique=True,
            postgresql_where=OPEN_INCIDENT,
            sqlite_where=OPEN_INCIDENT,
        ),
        sa.Index(None, "notify_state", "notify_next_at"),  # deliveries due
        sqlite_autoincrement=True,
    )
    sa.Table(
        f"{prefix}audit",
        metadata,
        # ids only grow (SQLite: AUTOINCREMENT, never reusing the id of a deleted row),
        # so the log pages by id
        sa.Column("id", AUDIT_ID, primary_key=True, autoincrement=True),
        sa.Column("at", when, nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        # No foreign keys: the log outlives deleted jobs and executions.
        sa.Column("job_key", sa.String(255), nullable=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("details", _json(), nullable=False),
        sa.Index(None, "at"),  # retention, and since/until
        sa.Index(None, "job_key", "id"),  # one job's log
        sqlite_autoincrement=True,
    )
    return metadata


def build_tables(prefix: str = "taskmgr_", schema: str | None = None) -> Tables:
    return Tables(build_metadata(prefix, schema), prefix)
