"""Executions get a key of their own: a chain id shared by a run's attempts, and an
idempotency key for deferred tasks.

Revision ID: tm0002
Revises: tm0001
Create Date: 2026-12-05

Before, an execution was known by its slot ``(job_id, scheduled_for, attempt)``, so a
manual run had to find a free instant. Now only the slots of a schedule (trigger
``schedule`` or ``catchup``) are unique per job and instant; every run has a chain id
(its first attempt's id) and each attempt of a chain is unique; a deferred run may
carry an idempotency key, unique per job. Existing rows are kept: a first attempt
becomes its own chain, a retry joins the chain of the first attempt of its slot (or
its own, when that one was already deleted by retention).

Downgrading restores the slot key. Runs that now share an instant (manual runs and
deferred tasks asked for at the same moment) are moved apart by microseconds first,
as 0.1 did when it stored them: no row is deleted.

Self-contained on purpose, like every released revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "tm0002"
down_revision: str | Sequence[str] | None = "tm0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SLOT_WHERE = "\"trigger\" IN ('schedule', 'catchup')"


def _target() -> tuple[str, str | None]:
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    return attributes.get("taskmgr_table_prefix", "taskmgr_"), attributes.get("taskmgr_schema")


def _executions(name: str, schema: str | None, *, chains: bool, head: bool = False) -> sa.Table:
    """The executions table as tm0001 left it, with this revision's two columns when
    ``chains``, or as this revision leaves it when ``head``: the source of SQLite's
    table copy (so no reflection is needed, and ``taskmgr db sql`` can render it) and
    of the backfill statements."""
    when = sa.DateTime(timezone=True)
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("job_key", sa.String(255), nullable=False),
        sa.Column("scheduled_for", when, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", when, nullable=False),
        sa.Column("queued", sa.Boolean(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("dispatched_at", when, nullable=True),
        sa.Column("started_at", when, nullable=True),
        sa.Column("completed_at", when, nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("error_type", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("result_summary", sa.JSON(), nullable=True),
        sa.Column("celery_task_id", sa.String(255), nullable=True),
    ]
    if chains:
        columns += [
            sa.Column("chain_id", sa.String(36), nullable=not head),
            sa.Column("idempotency_key", sa.String(255), nullable=True),
        ]
    if head:
        keys: list[sa.UniqueConstraint] = [
            sa.UniqueConstraint("chain_id", "attempt", name=f"uq_{name}_chain_id_attempt"),
            sa.UniqueConstraint(
                "job_id", "idempotency_key", name=f"uq_{name}_job_id_idempotency_key"
            ),
        ]
    else:
        keys = [
            sa.UniqueConstraint(
                "job_id",
                "scheduled_for",
                "attempt",
                name=f"uq_{name}_job_id_scheduled_for_attempt",
            )
        ]
    table = sa.Table(
        name,
        sa.MetaData(schema=schema),
        *columns,
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        *keys,
    )
    for index in _INDEXES:
        sa.Index(f"ix_{name}_{'_'.join(index)}", *(table.c[c] for c in index))
    return table


_INDEXES = (
    ("status", "due_at"),
    ("job_id", "status"),
    ("created_at", "id"),
    ("job_key", "created_at"),
    ("status", "completed_at"),
)


def upgrade() -> None:
    prefix, schema = _target()
    name = f"{prefix}executions"
    op.add_column(name, sa.Column("chain_id", sa.String(36), nullable=True), schema=schema)
    op.add_column(name, sa.Column("idempotency_key", sa.String(255), nullable=True), schema=schema)

    table = _executions(name, schema, chains=True)
    first = table.alias("first_attempt")
    op.execute(sa.update(table).where(table.c.attempt == 1).values(chain_id=table.c.id))
    op.execute(
        sa.update(table)
        .where(table.c.attempt > 1)
        .values(
            chain_id=sa.func.coalesce(
                sa.select(first.c.id)
                .where(
                    first.c.job_id == table.c.job_id,
                    first.c.scheduled_for == table.c.scheduled_for,
                    first.c.attempt == 1,
                )
                .scalar_subquery(),
                table.c.id,
            )
        )
    )

    with op.batch_alter_table(name, schema=schema, copy_from=table) as batch:
        batch.alter_column("chain_id", existing_type=sa.String(36), nullable=False)
        batch.drop_constraint(f"uq_{name}_job_id_scheduled_for_attempt", type_="unique")
        batch.create_unique_constraint(f"uq_{name}_chain_id_attempt", ["chain_id", "attempt"])
        batch.create_unique_constraint(
            f"uq_{name}_job_id_idempotency_key", ["job_id", "idempotency_key"]
        )
    op.create_index(
        f"ix_{name}_job_id_scheduled_for",
        name,
        ["job_id", "scheduled_for"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text(_SLOT_WHERE),
        sqlite_where=sa.text(_SLOT_WHERE),
    )


def downgrade() -> None:
    prefix, schema = _target()
    name = f"{prefix}executions"
    table = _executions(name, schema, chains=True)
    bind = op.get_bind()

    # Move apart the runs that share (job, instant, attempt), keeping the first in place.
    key = (table.c.job_id, table.c.scheduled_for, table.c.attempt)
    shared = sa.select(*key).group_by(*key).having(sa.func.count() > 1).subquery()
    rows = bind.execute(
        sa.select(table.c.id, *key)
        .join(
            shared,
            sa.and_(
                table.c.job_id == shared.c.job_id,
                table.c.scheduled_for == shared.c.scheduled_for,
                table.c.attempt == shared.c.attempt,
            ),
        )
        .order_by(table.c.job_id, table.c.scheduled_for, table.c.attempt, table.c.id)
    ).all()
    taken = {
        (row.job_id, row.scheduled_for, row.attempt)
        for row in bind.execute(sa.select(*key).where(table.c.job_id.in_({r.job_id for r in rows})))
    }
    seen: set[tuple[object, ...]] = set()
    for row in rows:
        slot = (row.job_id, row.scheduled_for, row.attempt)
        if slot not in seen:
            seen.add(slot)  # the first of its group keeps its instant
            continue
        moved = row.scheduled_for
        while (row.job_id, moved, row.attempt) in taken:
            moved += timedelta(microseconds=1)
        taken.add((row.job_id, moved, row.attempt))
        bind.execute(sa.update(table).where(table.c.id == row.id).values(scheduled_for=moved))

    op.drop_index(f"ix_{name}_job_id_scheduled_for", table_name=name, schema=schema)
    with op.batch_alter_table(
        name, schema=schema, copy_from=_executions(name, schema, chains=True, head=True)
    ) as batch:
        batch.drop_constraint(f"uq_{name}_job_id_idempotency_key", type_="unique")
        batch.drop_constraint(f"uq_{name}_chain_id_attempt", type_="unique")
        batch.create_unique_constraint(
            f"uq_{name}_job_id_scheduled_for_attempt", ["job_id", "scheduled_for", "attempt"]
        )
        batch.drop_column("idempotency_key")
        batch.drop_column("chain_id")
