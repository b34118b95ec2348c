"""The audit log (a table of its own) and a history retention per job.

Revision ID: tm0004
Revises: tm0003
Create Date: 2026-12-07

A new table ``<prefix>audit``: one row per change to a job or to the service's state
(who, when, through which door, what), written in the same transaction as the change.
Its id only grows (on SQLite the table is ``AUTOINCREMENT``, so the id of a deleted
row is never given again). And one nullable column, ``jobs.retention`` (seconds):
existing jobs have none, which is what NULL means (the global retention), so no row
is rewritten.

Downgrading drops the table (the log is lost) and the column (jobs fall back to the
global retention). On SQLite it needs SQLite 3.35 or newer (``ALTER TABLE ... DROP
COLUMN``; the column is part of no index or constraint).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0004"
down_revision: str | Sequence[str] | None = "tm0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def upgrade() -> None:
    prefix, schema = _target()
    jobs, audit = f"{prefix}jobs", f"{prefix}audit"
    op.add_column(jobs, sa.Column("retention", sa.Float(), nullable=True), schema=schema)
    op.create_table(
        audit,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("job_key", sa.String(255), nullable=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{audit}"),
        schema=schema,
        sqlite_autoincrement=True,
    )
    op.create_index(f"ix_{audit}_at", audit, ["at"], schema=schema)
    op.create_index(f"ix_{audit}_job_key_id", audit, ["job_key", "id"], schema=schema)


def downgrade() -> None:
    prefix, schema = _target()
    jobs, audit = f"{prefix}jobs", f"{prefix}audit"
    op.drop_index(f"ix_{audit}_job_key_id", table_name=audit, schema=schema)
    op.drop_index(f"ix_{audit}_at", table_name=audit, schema=schema)
    op.drop_table(audit, schema=schema)
    op.drop_column(jobs, "retention", schema=schema)
