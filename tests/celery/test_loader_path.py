"""The library never changes ``sys.path``: a service built from settings imports the
``celery_app`` the host named from where Python already looks. Only the ``taskmgr``
command makes its working directory importable, by appending it."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmgr import SchedulerService, TaskmgrSettings
from taskmgr.celery import CeleryDispatcher
from taskmgr.cli.loader import make_cwd_importable
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage import MemoryStorage


@pytest.fixture
def host_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module holding a Celery app, in a directory that is the working directory but
    not on ``sys.path``; its name is unique, so no earlier import answers for it."""
    name = f"celeryhost_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from celery import Celery\n"
        "app = Celery('pathtest', broker='memory://', set_as_current=False)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def _service(name: str) -> SchedulerService:
    settings = TaskmgrSettings(dispatcher="celery", celery_app=f"{name}:app")
    return SchedulerService(MemoryStorage(), settings=settings, background=False)


def test_building_a_service_never_changes_sys_path(
    host_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = list(sys.path)
    with pytest.raises(InvalidInputError, match="not found"):
        _service(host_module)  # the working directory is not importable for the library
    assert sys.path == before

    monkeypatch.syspath_prepend(str(tmp_path))  # the host made it importable itself
    before = list(sys.path)
    service = _service(host_module)
    try:
        assert isinstance(service.dispatcher, CeleryDispatcher)
        assert service.dispatcher.app.main == "pathtest"
    finally:
        service.close()
    assert sys.path == before


def test_the_command_appends_its_working_directory(host_module: str, tmp_path: Path) -> None:
    before = list(sys.path)
    make_cwd_importable()
    assert sys.path == [*before, os.getcwd()]  # appended: it never shadows anything
    make_cwd_importable()
    assert sys.path == [*before, os.getcwd()]  # once
    service = _service(host_module)
    service.close()
