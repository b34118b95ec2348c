"""The example shop's own database: its users table, reached through an async
SQLAlchemy engine that taskmgr is given too, so a signup and its welcome mail are
written in one transaction."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: The shop's database, and taskmgr's: one asyncio URL (``sqlite+aiosqlite://`` or
#: ``postgresql+asyncpg://``). taskmgr is given the engine below and connects its own
#: threads to the same database through the sync driver (pysqlite, psycopg).
DATABASE_URL = os.environ.get("SHOP_DATABASE_URL", "sqlite+aiosqlite:///shop.db")

engine = create_async_engine(DATABASE_URL)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "shop_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)


async def create_tables() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
