"""The example shop's own database: its users table, reached through an async
SQLAlchemy engine on the same database as taskmgr, so a signup and its welcome mail
are written in one transaction."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: taskmgr's database, and the shop's (one database: one transaction for both).
DATABASE_URL = os.environ.get("TASKMGR_DATABASE_URL", "sqlite:///shop.db")


def async_url(url: str) -> sa.URL:
    """The same database through an asyncio driver: aiosqlite for SQLite, psycopg
    (async-capable as it is) for PostgreSQL."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


engine = create_async_engine(async_url(DATABASE_URL))


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "shop_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)


async def create_tables() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
