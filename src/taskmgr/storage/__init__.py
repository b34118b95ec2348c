"""Storage backends behind one contract (:class:`Storage`, in :mod:`.base`).

``MemoryStorage`` is imported eagerly (it is small); ``SQLAlchemyStorage`` only when
first used, so ``import taskmgr`` does not pay for importing SQLAlchemy and Alembic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskmgr.storage.base import Storage
from taskmgr.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

__all__ = ["MemoryStorage", "SQLAlchemyStorage", "Storage"]


def __getattr__(name: str) -> Any:
    if name == "SQLAlchemyStorage":
        from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

        return SQLAlchemyStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
