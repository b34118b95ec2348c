"""The host's wiring: one Celery app, one SchedulerService that dispatches to it.

The same module serves both processes:

* the scheduler: ``taskmgr run --app app:service`` claims each slot in the database
  and publishes one message per execution;
* the workers: ``taskmgr worker --app app:service`` (or ``celery -A app worker``)
  run them. Importing this module registers taskmgr's task on ``celery_app``.
"""

from __future__ import annotations

import os

import jobs
from celery import Celery
from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher

celery_app = Celery(
    "example",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
)
celery_app.conf.update(
    task_default_queue=os.environ.get("CELERY_QUEUE", "celery"),
    broker_connection_retry_on_startup=True,
)

service = SchedulerService(
    os.environ.get("TASKMGR_DATABASE_URL", "sqlite:///celery_example.db"),
    jobs=[jobs],
    dispatcher=CeleryDispatcher(celery_app),
)
