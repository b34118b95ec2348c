"""The in-memory backend: :class:`MemoryStorage` (in :mod:`.store`), its tables and undo
journal (:mod:`.state`), its reads (:mod:`.queries`), its claim (:mod:`.claim`) and
its reaper (:mod:`.liveness`)."""

from __future__ import annotations

from taskmgr.storage.memory.store import MemoryStorage

__all__ = ["MemoryStorage"]
