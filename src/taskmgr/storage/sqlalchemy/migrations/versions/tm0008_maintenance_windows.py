"""Maintenance windows and exclusion dates.

Revision ID: tm0008
Revises: tm0007
Create Date: 2026-12-07

A new table ``<prefix>windows``: one row per maintenance window, known by its
``name``. ``job_key`` names the one job it covers (NULL: every job of the service; no
foreign key, like the audit log: a window outlives a job deleted under it and covers
the job again if it comes back). A one-off window has ``starts_at`` and ``ends_at``; a
recurring one has a cron expression for its starts (``cron``), read in ``timezone``,
and lasts ``duration`` seconds. ``action`` is ``skip`` or ``defer``; ``reason``,
``created_by`` and ``created_at`` say why, who and when.

One nullable column on ``<prefix>jobs``: ``exclude_dates``, a JSON list of ISO dates
(``YYYY-MM-DD``) on which the job's slots are skipped; NULL means none. No row is
rewritten.

Downgrading drops the table (the windows end: slots inside them run again) and the
column (the exclusion dates are forgotten). On SQLite it needs SQLite 3.35 or newer
(``ALTER TABLE ... DROP COLUMN``; the column is part of no constraint or index).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0008"
down_revision: str | Sequence[str] | None = "tm0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def upgrade() -> None:
    prefix, schema = _target()
    jobs, windows = f"{prefix}jobs", f"{prefix}windows"
    when = sa.DateTime(timezone=True)
    op.add_column(
        jobs, sa.Column("exclude_dates", sa.JSON(none_as_null=True), nullable=True), schema=schema
    )
    op.create_table(
        windows,
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("job_key", sa.String(255), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("starts_at", when, nullable=True),
        sa.Column("ends_at", when, nullable=True),
        sa.Column("cron", sa.String(256), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.PrimaryKeyConstraint("name", name=f"pk_{windows}"),
        schema=schema,
    )


def downgrade() -> None:
    prefix, schema = _target()
    op.drop_table(f"{prefix}windows", schema=schema)
    op.drop_column(f"{prefix}jobs", "exclude_dates", schema=schema)
