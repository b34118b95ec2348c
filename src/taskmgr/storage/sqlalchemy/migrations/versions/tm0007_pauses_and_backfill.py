"""Pauses with who, why and until when, and backfilled slots.

Revision ID: tm0007
Revises: tm0006
Create Date: 2026-12-07

Four nullable columns on ``<prefix>jobs``: ``paused_by``, ``paused_reason``,
``paused_at`` and ``paused_until`` (a job paused before has none of them: paused by
somebody unknown, until resumed, which is what NULL means), and an index on
``paused_until`` (the claim resumes the jobs whose time has come). No row is
rewritten.

A new table ``<prefix>pauses``: one row per paused queue (``scope`` 'queue', ``name``
the queue) or for the whole service (``scope`` 'service', ``name`` ''), with who, why,
since when and until when.

A backfilled slot (trigger ``backfill``) is a slot of its job's schedule: the partial
unique index on ``executions (job_id, scheduled_for)`` covers it too. The index is
dropped and created again with the wider condition; no existing row has that trigger,
so none can clash.

Downgrading drops the table, the columns and their index (paused jobs stay paused,
without who, why and until when; pauses of queues and of the service end), turns the
backfilled rows into ``catchup`` rows (the trigger an older taskmgr knows; both are in
the slot index, so no two rows clash) and restores the narrower index. On SQLite it
needs SQLite 3.35 or newer (``ALTER TABLE ... DROP COLUMN``; the columns are part of no
constraint, and their index is dropped first).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0007"
down_revision: str | Sequence[str] | None = "tm0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SLOTS_BEFORE = "\"trigger\" IN ('catchup', 'schedule')"
_SLOTS_AFTER = "\"trigger\" IN ('backfill', 'catchup', 'schedule')"
_PAUSE_COLUMNS = ("paused_by", "paused_reason", "paused_at", "paused_until")


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def _slot_index(prefix: str, schema: str | None, condition: str) -> None:
    executions = f"{prefix}executions"
    name = f"ix_{executions}_job_id_scheduled_for"
    op.drop_index(name, table_name=executions, schema=schema)
    op.create_index(
        name,
        executions,
        ["job_id", "scheduled_for"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text(condition),
        sqlite_where=sa.text(condition),
    )


def upgrade() -> None:
    prefix, schema = _target()
    jobs, pauses = f"{prefix}jobs", f"{prefix}pauses"
    when = sa.DateTime(timezone=True)
    op.add_column(jobs, sa.Column("paused_by", sa.String(255), nullable=True), schema=schema)
    op.add_column(jobs, sa.Column("paused_reason", sa.String(500), nullable=True), schema=schema)
    op.add_column(jobs, sa.Column("paused_at", when, nullable=True), schema=schema)
    op.add_column(jobs, sa.Column("paused_until", when, nullable=True), schema=schema)
    op.create_index(f"ix_{jobs}_paused_until", jobs, ["paused_until"], schema=schema)
    op.create_table(
        pauses,
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("paused_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("paused_at", when, nullable=False),
        sa.Column("paused_until", when, nullable=True),
        sa.PrimaryKeyConstraint("scope", "name", name=f"pk_{pauses}"),
        schema=schema,
    )
    _slot_index(prefix, schema, _SLOTS_AFTER)


def downgrade() -> None:
    prefix, schema = _target()
    jobs, pauses = f"{prefix}jobs", f"{prefix}pauses"
    executions = sa.Table(
        f"{prefix}executions",
        sa.MetaData(schema=schema),
        sa.Column("trigger", sa.String(16)),
    )
    op.execute(
        sa.update(executions).where(executions.c.trigger == "backfill").values(trigger="catchup")
    )
    _slot_index(prefix, schema, _SLOTS_BEFORE)
    op.drop_table(pauses, schema=schema)
    op.drop_index(f"ix_{jobs}_paused_until", table_name=jobs, schema=schema)
    for column in _PAUSE_COLUMNS:
        op.drop_column(jobs, column, schema=schema)
