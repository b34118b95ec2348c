"""A revision from a "newer taskmgr", only for tests: makes a database behind/ahead.

Revision ID: tm9001
Revises: tm0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "tm9001"
down_revision = "tm0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    prefix = attributes.get("taskmgr_table_prefix", "taskmgr_")
    op.create_table(
        f"{prefix}future",
        sa.Column("id", sa.Integer(), primary_key=True),
        schema=attributes.get("taskmgr_schema"),
    )
