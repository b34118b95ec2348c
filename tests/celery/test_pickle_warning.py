"""A worker whose app accepts pickle for the host's own tasks is warned about where the
warning is seen: once Celery's logging exists (``celeryd_after_setup``) for ``celery
worker``, at ``worker_init`` for a worker embedded in the host's process. A real worker
shows it in its log: ``test_security.py``."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from celery import Celery, signals
from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher
from taskmgr.storage import MemoryStorage

WARNING = "a pickle message is code that runs when it is decoded"


def _app(accept: list[str], **dispatcher: Any) -> tuple[Celery, SchedulerService]:
    app = Celery("pickletest", broker="memory://", set_as_current=False)
    app.conf.accept_content = accept
    service = SchedulerService(
        MemoryStorage(), dispatcher=CeleryDispatcher(app, **dispatcher), background=False
    )
    return app, service


def _after_setup(app: Celery) -> None:
    """What ``celery worker`` sends once it has set its logging up."""
    signals.celeryd_after_setup.send(
        sender="worker@host", instance=SimpleNamespace(app=app), conf=app.conf
    )


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="taskmgr.celery")
    return caplog


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "taskmgr.celery" and "pickle" in r.message]


def test_a_worker_accepting_pickle_is_warned_once_logging_is_set_up(
    records: pytest.LogCaptureFixture,
) -> None:
    app, service = _app(["json", "pickle"])
    other = Celery("other", broker="memory://", set_as_current=False)
    other.conf.accept_content = ["pickle"]
    _after_setup(other)  # a worker of an app taskmgr is not installed on: not ours
    assert _ours(records) == []
    _after_setup(app)
    [record] = _ours(records)
    assert record.levelno == logging.WARNING
    assert WARNING in record.message and "allow_pickle_app=True" in record.message
    service.close()


def test_the_host_can_say_it_chose_pickle(records: pytest.LogCaptureFixture) -> None:
    app, service = _app(["json", "application/x-python-serialize"], allow_pickle_app=True)
    _after_setup(app)
    [record] = _ours(records)
    assert record.levelno == logging.INFO
    assert "allow_pickle_app=True" in record.message
    service.close()


@pytest.mark.parametrize("accept", [["json"], ["application/json"], ["json", "msgpack"]])
def test_no_pickle_no_warning(records: pytest.LogCaptureFixture, accept: list[str]) -> None:
    app, service = _app(accept)
    _after_setup(app)
    assert _ours(records) == []
    service.close()


def test_an_embedded_worker_warns_at_its_start(records: pytest.LogCaptureFixture) -> None:
    app, service = _app(["json", "pickle"])
    app.conf.worker_hijack_root_logger = False  # the host's logging stays in place
    # Celery's test worker still sets the root logger's level (to ERROR): put it back,
    # or the tests after this one in the process would see no warnings
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            pass
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
    assert [r.levelno for r in _ours(records)] == [logging.WARNING]
    service.close()
