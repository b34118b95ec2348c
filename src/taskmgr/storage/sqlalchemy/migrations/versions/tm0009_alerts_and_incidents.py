"""Alerts from the schedule itself: thresholds per job, and incidents.

Revision ID: tm0009
Revises: tm0008
Create Date: 2026-12-07

Four nullable columns on ``<prefix>jobs``: ``alert_late_after``, ``alert_failures``,
``alert_max_runtime`` and ``alert_no_success_within`` (an existing job has none, which
is what NULL means: the service's default). No row is rewritten.

A new table ``<prefix>incidents``: one row per breach of an alert rule, with its job
(``job_key``; '' for the whole service; no foreign key, like the audit log: an
incident outlives its job), its ``rule``, when the breach began (``since``), when it
was opened and resolved, a message and JSON details, and the state of its webhook
delivery (``notify_state``, ``notify_attempts``, ``notify_next_at``, ``notified_at``,
``notify_error``). A partial unique index on ``(job_key, rule) WHERE resolved_at IS
NULL`` holds one open incident per job and rule, whoever opens it. Ids only grow
(SQLite: ``AUTOINCREMENT``).

Downgrading drops the table (the incidents, open or resolved, are forgotten) and the
columns (the thresholds are forgotten; every job is kept). On SQLite it needs SQLite
3.35 or newer (``ALTER TABLE ... DROP COLUMN``; the columns are part of no constraint
or index).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0009"
down_revision: str | Sequence[str] | None = "tm0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = '"resolved_at" IS NULL'
_COLUMNS = (
    ("alert_late_after", sa.Float()),
    ("alert_failures", sa.Integer()),
    ("alert_max_runtime", sa.Float()),
    ("alert_no_success_within", sa.Float()),
)


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def upgrade() -> None:
    prefix, schema = _target()
    jobs, incidents = f"{prefix}jobs", f"{prefix}incidents"
    when = sa.DateTime(timezone=True)
    for name, kind in _COLUMNS:
        op.add_column(jobs, sa.Column(name, kind, nullable=True), schema=schema)
    op.create_table(
        incidents,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_key", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("since", when, nullable=False),
        sa.Column("opened_at", when, nullable=False),
        sa.Column("resolved_at", when, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("notify_state", sa.String(16), nullable=True),
        sa.Column("notify_attempts", sa.Integer(), nullable=False),
        sa.Column("notify_next_at", when, nullable=True),
        sa.Column("notified_at", when, nullable=True),
        sa.Column("notify_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{incidents}"),
        schema=schema,
        sqlite_autoincrement=True,
    )
    op.create_index(
        f"ix_{incidents}_job_key_rule",
        incidents,
        ["job_key", "rule"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )
    op.create_index(
        f"ix_{incidents}_notify_state_notify_next_at",
        incidents,
        ["notify_state", "notify_next_at"],
        schema=schema,
    )


def downgrade() -> None:
    prefix, schema = _target()
    jobs, incidents = f"{prefix}jobs", f"{prefix}incidents"
    op.drop_index(
        f"ix_{incidents}_notify_state_notify_next_at", table_name=incidents, schema=schema
    )
    op.drop_index(f"ix_{incidents}_job_key_rule", table_name=incidents, schema=schema)
    op.drop_table(incidents, schema=schema)
    for name, _kind in reversed(_COLUMNS):
        op.drop_column(jobs, name, schema=schema)
