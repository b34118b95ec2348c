"""A job can choose the dispatcher that runs it: ``jobs.dispatch``, the name of one of
the service's dispatchers (``celery``, ``inline``, ...).

Revision ID: tm0005
Revises: tm0004
Create Date: 2026-12-07

One nullable column, added in place: existing jobs choose none, which is what NULL
means (the service's default dispatcher, or ``inline`` for a job whose queue is
``inline``, as before), so no row is rewritten. Not indexed.

Downgrading drops the column and keeps every row: jobs that chose a dispatcher run on
the service's default again. On SQLite it needs SQLite 3.35 or newer (``ALTER TABLE
... DROP COLUMN``; the column is part of no index or constraint).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0005"
down_revision: str | Sequence[str] | None = "tm0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def upgrade() -> None:
    prefix, schema = _target()
    op.add_column(
        f"{prefix}jobs", sa.Column("dispatch", sa.String(128), nullable=True), schema=schema
    )


def downgrade() -> None:
    prefix, schema = _target()
    op.drop_column(f"{prefix}jobs", "dispatch", schema=schema)
