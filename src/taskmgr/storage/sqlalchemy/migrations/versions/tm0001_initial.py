"""Initial schema: jobs, executions, instances.

Revision ID: tm0001
Revises:
Create Date: 2026-05-09

Self-contained on purpose (a released revision never changes, so it must not import
models that will): plain SQLAlchemy types, names spelled out. The table prefix and
schema come from the migration config so a host can choose them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tm0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("taskmgr",)
depends_on: str | Sequence[str] | None = None


def _target() -> tuple[str, str | None]:
    """The table prefix and schema chosen by the host (defaults: ``taskmgr_``, none)."""
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def _when(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    prefix, schema = _target()
    jobs, executions, instances = f"{prefix}jobs", f"{prefix}executions", f"{prefix}instances"

    op.create_table(
        jobs,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_key", sa.String(255), nullable=False),
        sa.Column("func", sa.String(255), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("max_instances", sa.Integer(), nullable=False),
        sa.Column("overlap_policy", sa.String(16), nullable=False),
        sa.Column("misfire_grace_time", sa.Float(), nullable=True),
        sa.Column("coalesce", sa.Boolean(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_backoff_base", sa.Float(), nullable=False),
        sa.Column("retry_backoff_max", sa.Float(), nullable=False),
        sa.Column("retry_jitter", sa.Float(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=True),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        _when("next_run_at", nullable=True),
        _when("last_run_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{jobs}"),
        sa.UniqueConstraint("job_key", name=f"uq_{jobs}_job_key"),
        schema=schema,
    )
    op.create_index(f"ix_{jobs}_state_next_run_at", jobs, ["state", "next_run_at"], schema=schema)

    op.create_table(
        executions,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("job_key", sa.String(255), nullable=False),
        _when("scheduled_for", nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _when("due_at", nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        _when("created_at", nullable=False),
        _when("dispatched_at", nullable=True),
        _when("started_at", nullable=True),
        _when("completed_at", nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("error_type", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("result_summary", sa.JSON(), nullable=True),
        sa.Column("celery_task_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{executions}"),
        sa.UniqueConstraint(
            "job_id",
            "scheduled_for",
            "attempt",
            name=f"uq_{executions}_job_id_scheduled_for_attempt",
        ),
        schema=schema,
    )
    for columns in (
        ["status", "due_at"],
        ["job_id", "status"],
        ["created_at", "id"],
        ["job_key", "created_at"],
        ["status", "completed_at"],
    ):
        op.create_index(f"ix_{executions}_{'_'.join(columns)}", executions, columns, schema=schema)

    op.create_table(
        instances,
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _when("started_at", nullable=False),
        _when("last_heartbeat", nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{instances}"),
        schema=schema,
    )


def downgrade() -> None:
    prefix, schema = _target()
    for table in ("instances", "executions", "jobs"):
        op.drop_table(f"{prefix}{table}", schema=schema)
