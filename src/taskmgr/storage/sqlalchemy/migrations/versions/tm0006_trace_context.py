"""A run asked for by a caller keeps the caller's trace: ``executions.trace_context``,
the W3C trace context (``traceparent``, ``tracestate``) of the span that deferred it
or ran it by hand, as JSON.

Revision ID: tm0006
Revises: tm0005
Create Date: 2026-12-07

One nullable column, added in place: existing runs have no trace context, which is
what NULL means (their spans start a trace of their own, as before), so no row is
rewritten. Not indexed.

Downgrading drops the column and keeps every row. On SQLite it needs SQLite 3.35 or
newer (``ALTER TABLE ... DROP COLUMN``; the column is part of no index or constraint).

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0006"
down_revision: str | Sequence[str] | None = "tm0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def upgrade() -> None:
    prefix, schema = _target()
    op.add_column(
        f"{prefix}executions",
        sa.Column("trace_context", sa.JSON(none_as_null=True), nullable=True),
        schema=schema,
    )


def downgrade() -> None:
    prefix, schema = _target()
    op.drop_column(f"{prefix}executions", "trace_context", schema=schema)
