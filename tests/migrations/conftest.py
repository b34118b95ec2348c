"""Migration fixtures: a fresh database per test (reused from the storage tests) and
``future``, which makes this code see one more revision than it ships."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config

from taskmgr.storage.sqlalchemy import migrate
from tests.integration.test_sqlalchemy_storage import make_storage, pg_schema

__all__ = ["make_storage", "pg_schema"]

PACKAGED = Path(migrate.__file__).parent / "migrations" / "versions"
FUTURE = Path(__file__).parent / "future_versions"


@pytest.fixture
def future(monkeypatch: pytest.MonkeyPatch) -> None:
    """While active, the code's head is ``tm9001`` (as in a newer taskmgr)."""
    original = migrate.alembic_config

    def config(*args: Any, **kwargs: Any) -> Config:
        made = original(*args, **kwargs)
        made.set_main_option("version_locations", os.pathsep.join([str(PACKAGED), str(FUTURE)]))
        return made

    monkeypatch.setattr(migrate, "alembic_config", config)
    # the head told by the packaged files' names is no longer the code's head
    monkeypatch.setattr(migrate, "packaged_head", lambda: None)
