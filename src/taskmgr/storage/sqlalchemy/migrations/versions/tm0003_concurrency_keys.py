"""Tasks can bound their runs per argument value: a job's ``concurrency_key`` (the name
of one of its function's arguments) and each execution's ``concurrency_value`` (that
argument's value as canonical JSON, the group the run counts in).

Revision ID: tm0003
Revises: tm0002
Create Date: 2026-12-07

Two nullable columns, added in place: existing jobs have no key and existing runs no
group, which is what NULL means, so no row is rewritten. Neither column is indexed
(a group's active runs are counted through the ``(job_id, status)`` index).

Downgrading drops both columns and keeps every row; jobs that had a key bound their
runs per task again. On SQLite it needs SQLite 3.35 or newer (``ALTER TABLE ... DROP
COLUMN``; neither column is part of an index or constraint, so no table copy is needed).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0003"
down_revision: str | Sequence[str] | None = "tm0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table suffix, column, its width), in the order they are added.
_COLUMNS = (("jobs", "concurrency_key", 100), ("executions", "concurrency_value", 255))


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def upgrade() -> None:
    prefix, schema = _target()
    for table, column, width in _COLUMNS:
        op.add_column(
            f"{prefix}{table}", sa.Column(column, sa.String(width), nullable=True), schema=schema
        )


def downgrade() -> None:
    prefix, schema = _target()
    for table, column, _ in reversed(_COLUMNS):
        op.drop_column(f"{prefix}{table}", column, schema=schema)
