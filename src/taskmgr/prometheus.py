"""Prometheus metrics for a :class:`~taskmgr.SchedulerService` (extra ``taskmgr[prometheus]``).

::

    from prometheus_client import CollectorRegistry
    from taskmgr.prometheus import TaskmgrCollector

    registry = CollectorRegistry()
    TaskmgrCollector(service, registry=registry)

Nothing is registered anywhere at import. Two sources, chosen for what must be true
across processes:

* **From the database, at scrape time** (the same answer from every process, however
  many schedulers and Celery workers run): executions in the stored history by job
  and status, each job's last success and next run, each job's queue (pending
  executions due now, and how long the oldest has waited), jobs by state, live
  instances, the open incidents (each job overdue or failing, the incidents by rule).
* **From this process's events** (counters and histograms, summed across targets in
  PromQL): executions ended here by job and status, run duration, start delay
  (start minus scheduled time), defer-to-start latency of deferred tasks (start
  minus the time of the defer), missed, skipped and lost slots recorded here.
  prometheus-client's multiprocess mode cannot carry a custom collector, and
  duration histograms cannot be rebuilt from the database cheaply.

See ``docs/operations.md`` for the metric list and example alert rules.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "taskmgr.prometheus needs prometheus-client: pip install 'taskmgr[prometheus]'"
    ) from exc

from taskmgr.core.alerts import AlertRule, Incident
from taskmgr.core.models import ExecutionTrigger, Job, JobQueue, JobState
from taskmgr.core.rules import next_run as next_run_of
from taskmgr.execution.events import EventKind, ExecutionEvent

if TYPE_CHECKING:
    from taskmgr.service import SchedulerService

__all__ = ["DEFAULT_BUCKETS", "TaskmgrCollector"]

logger = logging.getLogger("taskmgr.metrics")

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0, 900.0, 3600.0)  # fmt: skip
UNKNOWN_JOB = "unknown"


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.count = 0
        self.sum = 0.0


class TaskmgrCollector(Collector):
    """taskmgr's metrics for one service; registered on ``registry`` when given
    (else call ``registry.register(collector)`` yourself). :meth:`close` unregisters
    it and stops listening."""

    def __init__(
        self,
        service: SchedulerService,
        *,
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.service = service
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._executions: dict[tuple[str, str], int] = {}
        self._missed: dict[str, int] = {}
        self._skipped: dict[str, int] = {}
        self._lost: dict[str, int] = {}
        self._duration: dict[str, _Histogram] = {}
        self._delay: dict[str, _Histogram] = {}
        self._defer_to_start: dict[str, _Histogram] = {}
        self._registry = registry
        service.add_listener(self._on_event)
        if registry is not None:
            registry.register(self)

    def close(self) -> None:
        self.service.remove_listener(self._on_event)
        if self._registry is not None:
            self._registry.unregister(self)
            self._registry = None

    # -- process-local, fed by events ----------------------------------------------------

    def _on_event(self, event: ExecutionEvent) -> None:
        job = event.job_key or UNKNOWN_JOB
        with self._lock:
            if event.kind is EventKind.STARTED:
                if event.started_at is not None and event.scheduled_for is not None:
                    delay = (event.started_at - event.scheduled_for).total_seconds()
                    self._observe(self._delay, job, max(0.0, delay))
                if (
                    event.trigger is ExecutionTrigger.DEFERRED
                    and event.started_at is not None
                    and event.created_at is not None
                ):
                    waited = (event.started_at - event.created_at).total_seconds()
                    self._observe(self._defer_to_start, job, max(0.0, waited))
                return
            pair = (job, event.status.value)
            self._executions[pair] = self._executions.get(pair, 0) + 1
            if event.kind is EventKind.MISSED:
                self._missed[job] = self._missed.get(job, 0) + 1
            elif event.kind is EventKind.SKIPPED:
                self._skipped[job] = self._skipped.get(job, 0) + 1
            elif event.kind is EventKind.LOST:
                self._lost[job] = self._lost.get(job, 0) + 1
            if event.duration_ms is not None:
                self._observe(self._duration, job, event.duration_ms / 1000)

    def _observe(self, into: dict[str, _Histogram], job: str, value: float) -> None:
        histogram = into.get(job)
        if histogram is None:
            histogram = into[job] = _Histogram(len(self.buckets))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                histogram.buckets[i] += 1
        histogram.count += 1
        histogram.sum += value

    # -- the scrape ------------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return []  # metrics are dynamic: never collect on register

    def collect(self) -> Iterator[Metric]:
        yield from self._local()
        yield from self._from_database()

    def _local(self) -> Iterator[Metric]:
        with self._lock:
            executions = dict(self._executions)
            counters = {
                "missed": dict(self._missed),
                "skipped": dict(self._skipped),
                "lost": dict(self._lost),
            }
            histograms = {
                "duration": {k: self._snapshot(h) for k, h in self._duration.items()},
                "start_delay": {k: self._snapshot(h) for k, h in self._delay.items()},
                "defer_to_start": {k: self._snapshot(h) for k, h in self._defer_to_start.items()},
            }
        family = CounterMetricFamily(
            "taskmgr_executions",
            "Executions that ended in this process (or were recorded missed/skipped/lost "
            "here), by job and status.",
            labels=["job", "status"],
        )
        for (job, status), n in sorted(executions.items()):
            family.add_metric([job, status], n)
        yield family
        for what, values in counters.items():
            counter = CounterMetricFamily(
                f"taskmgr_{what}",
                f"Slots recorded {what} by this process, by job.",
                labels=["job"],
            )
            for job, n in sorted(values.items()):
                counter.add_metric([job], n)
            yield counter
        helps = {
            "duration": "Run time of executions that ended in this process.",
            "start_delay": "Start minus scheduled time of executions started in this process.",
            "defer_to_start": "Start minus defer time of deferred tasks started in this "
            "process (a run deferred with a delay includes it).",
        }
        for what, per_job in histograms.items():
            histogram = HistogramMetricFamily(
                f"taskmgr_execution_{what}_seconds", helps[what], labels=["job"]
            )
            for job, (buckets, total) in sorted(per_job.items()):
                histogram.add_metric([job], buckets, total)
            yield histogram
        deliveries = CounterMetricFamily(
            "taskmgr_alert_webhook_deliveries",
            "Webhook delivery attempts of incidents made by this process, by outcome "
            "(delivered, failed; given_up: the last attempt failed).",
            labels=["outcome"],
        )
        for outcome, n in self.service.alert_counts.snapshot().items():
            deliveries.add_metric([outcome], n)
        yield deliveries

    def _snapshot(self, histogram: _Histogram) -> tuple[list[tuple[str, float]], float]:
        buckets = [
            (_bound(bound), float(n))
            for bound, n in zip(self.buckets, histogram.buckets, strict=True)
        ]
        buckets.append(("+Inf", float(histogram.count)))
        return buckets, histogram.sum

    def _from_database(self) -> Iterator[Metric]:
        service = self.service
        error = GaugeMetricFamily(
            "taskmgr_metrics_database_error",
            "1 when the last scrape could not read the database (its metrics are absent).",
        )
        try:
            service.open()
            storage = service.storage
            now = service.clock.now()
            summary = storage.history_summary()
            # Bounded: reads only the executions that have not ended, one row per job.
            queues = storage.job_queues(now=now)
            jobs = storage.list_jobs()
            instances = storage.list_instances()
            incidents = storage.list_incidents(open_only=True, limit=1000)
        except Exception:
            logger.exception("metrics: could not read the database")
            error.add_metric([], 1.0)
            yield error
            return
        error.add_metric([], 0.0)
        yield error

        history = GaugeMetricFamily(
            "taskmgr_history_executions",
            "Executions in the stored history (all processes), by job and status.",
            labels=["job", "status"],
        )
        for (job, status), n in sorted(summary.counts.items()):
            history.add_metric([job, status.value], float(n))
        yield history

        last_success = GaugeMetricFamily(
            "taskmgr_job_last_success_timestamp_seconds",
            "When the job's latest successful execution completed (Unix time).",
            labels=["job"],
        )
        for job, when in sorted(summary.last_success.items()):
            last_success.add_metric([job], when.timestamp())
        yield last_success

        next_run = GaugeMetricFamily(
            "taskmgr_job_next_run_timestamp_seconds",
            "The job's next slot (Unix time); absent for a job with none.",
            labels=["job"],
        )
        states = dict.fromkeys((s.value for s in JobState), 0)
        for stored in jobs:
            states[stored.state.value] += 1
            upcoming = next_run_of(stored)  # none while paused or orphaned
            if upcoming is not None:
                next_run.add_metric([stored.key], upcoming.timestamp())
        yield next_run

        yield from _queue_metrics(jobs, queues, now)
        yield from _incident_metrics(jobs, incidents)

        by_state = GaugeMetricFamily("taskmgr_jobs", "Jobs by state.", labels=["state"])
        for state, n in states.items():
            by_state.add_metric([state], float(n))
        yield by_state

        live = sum(1 for instance in instances if service.liveness.is_live(instance, now))
        yield GaugeMetricFamily(
            "taskmgr_instances_live",
            "Instances (schedulers and workers) running with a fresh heartbeat.",
            value=float(live),
        )


def _queue_metrics(
    jobs: Sequence[Job], queues: Sequence[JobQueue], now: datetime
) -> Iterator[Metric]:
    """Queue depth and oldest due age per job: 0 for a job with nothing waiting, so a
    drained queue reads 0 rather than vanishing."""
    depth = dict.fromkeys((job.key for job in jobs), 0)
    age = dict.fromkeys(depth, 0.0)
    for queue in queues:  # a deleted job and its successor may share a key: add up
        depth[queue.job_key] = depth.get(queue.job_key, 0) + queue.due
        waited = 0.0
        if queue.oldest_due_at is not None:
            waited = max((now - queue.oldest_due_at).total_seconds(), 0.0)
        age[queue.job_key] = max(age.get(queue.job_key, 0.0), waited)
    family = GaugeMetricFamily(
        "taskmgr_queue_depth",
        "Pending executions whose due time has come (waiting to start), by job.",
        labels=["job"],
    )
    for job, n in sorted(depth.items()):
        family.add_metric([job], float(n))
    yield family
    family = GaugeMetricFamily(
        "taskmgr_queue_oldest_pending_age_seconds",
        "How long the job's oldest due pending execution has waited (0: none waits).",
        labels=["job"],
    )
    for job, seconds in sorted(age.items()):
        family.add_metric([job], seconds)
    yield family


def _incident_metrics(jobs: Sequence[Job], incidents: Sequence[Incident]) -> Iterator[Metric]:
    """From the open incidents: per job, whether it is overdue (``late``) and failing
    (0 for a job without such an incident, so an alert rule sees it clear), and the open
    incidents by rule."""
    by_rule = dict.fromkeys((rule.value for rule in AlertRule), 0)
    flags = {AlertRule.LATE: dict.fromkeys((job.key for job in jobs), 0.0)}
    flags[AlertRule.FAILING] = dict(flags[AlertRule.LATE])
    for incident in incidents:
        by_rule[incident.rule.value] += 1
        if incident.rule in flags and incident.job_key is not None:
            flags[incident.rule][incident.job_key] = 1.0
    helps = {
        AlertRule.LATE: ("taskmgr_job_overdue", "1 while the job has an open late incident."),
        AlertRule.FAILING: ("taskmgr_job_failing", "1 while the job has an open failing incident."),
    }
    for rule, (name, text) in helps.items():
        family = GaugeMetricFamily(name, text, labels=["job"])
        for job, value in sorted(flags[rule].items()):
            family.add_metric([job], value)
        yield family
    family = GaugeMetricFamily(
        "taskmgr_incidents_open", "Open incidents of the alert rules, by rule.", labels=["rule"]
    )
    for name, n in by_rule.items():
        family.add_metric([name], float(n))
    yield family


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))
