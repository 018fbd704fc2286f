"""`/metrics`: what Prometheus scrapes.

Three sources, each right whatever the number of processes and hosts:
- the counters and histograms every process records in Redis (`recorder`);
- gauges read from the database now (pending checkpoints, waiting jobs, running
  jobs) and from the workers' heartbeat keys, so they are state, not memory;
- django-prometheus' HTTP, database and cache metrics of the web processes, which
  live in each process: with more than one web process, PROMETHEUS_MULTIPROC_DIR
  makes prometheus_client share them through files and this view merges them.
"""

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core.metrics import recorder
from core.metrics.registry import METRICS
from jobs.heartbeat import worker_key


class RecordedCollector(Collector):
    """Counters and histograms from Redis."""

    def collect(self) -> Iterator[Metric]:
        stored = recorder.read_all()
        for name, definition in METRICS.items():
            fields = stored.get(name, {})
            if definition.kind == "counter":
                base = name.removesuffix("_total")
                counter = CounterMetricFamily(base, definition.help, labels=definition.labels)
                for field, value in sorted(fields.items()):
                    counter.add_metric(json.loads(field), value)
                yield counter
            else:
                yield _histogram(name, definition.help, definition.labels,
                                 definition.buckets, fields)


def _histogram(name: str, help: str, labels: tuple[str, ...], bounds: tuple[float, ...],
               fields: dict[str, float]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help, labels=labels)
    series: dict[str, dict[str, float]] = defaultdict(dict)
    for field, value in fields.items():
        label_json, _, part = field.rpartition("|")
        series[label_json][part] = value
    for label_json, parts in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for bound in [*map(str, bounds), "+Inf"]:
            cumulative += parts.get(bound, 0.0)
            buckets.append((bound, cumulative))
        family.add_metric(json.loads(label_json), buckets, parts.get("sum", 0.0))
    return family


class StateCollector(Collector):
    """Gauges of the present state, read when scraped."""

    def collect(self) -> Iterator[Metric]:
        from checkpoints.models import Checkpoint, CheckpointStatus
        from jobs.models import Job, JobStatus

        now = timezone.now()
        pending = GaugeMetricFamily("agent_checkpoints_pending",
                                    "Checkpoints waiting for a person.", labels=["kind"])
        oldest = GaugeMetricFamily("agent_checkpoint_oldest_pending_seconds",
                                   "Age of the oldest pending checkpoint.", labels=["kind"])
        for row in (Checkpoint.objects.filter(status=CheckpointStatus.PENDING)
                    .values("kind").annotate(n=Count("pk"), first=Min("opened_at"))
                    .order_by("kind")):
            pending.add_metric([row["kind"]], row["n"])
            oldest.add_metric([row["kind"]], max(0.0, (now - row["first"]).total_seconds()))
        yield pending
        yield oldest

        waiting = GaugeMetricFamily("agent_jobs_waiting",
                                    "Jobs waiting, by what they wait for.", labels=["reason"])
        for reason, count in (Job.objects.filter(status=JobStatus.WAITING)
                              .values("wait_reason").annotate(n=Count("pk"))
                              .order_by("wait_reason").values_list("wait_reason", "n")):
            waiting.add_metric([reason or "unknown"], count)
        yield waiting

        queued = Job.objects.filter(status=JobStatus.QUEUED).count()
        yield GaugeMetricFamily("agent_jobs_queued", "Jobs queued for a worker.", value=queued)
        active = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__gt=now).count()
        yield GaugeMetricFamily("agent_worker_active_jobs",
                                "Jobs a worker is running now (a live lease).", value=active)

        workers = GaugeMetricFamily(
            "agent_workers_up", "1 for each worker whose heartbeat is fresh.",
            labels=["worker"])
        if settings.COUNTERSIGN_METRICS_REDIS_URL:
            client = recorder.client()
            for raw in sorted(client.scan_iter(match=worker_key("*"), count=500)):
                workers.add_metric([raw.decode().removeprefix(worker_key(""))], 1)
        yield workers


def _web_registry() -> Any:
    """django-prometheus' metrics: shared through files when there are several web
    processes, else this process's own."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def render() -> bytes:
    ours = CollectorRegistry(auto_describe=False)
    ours.register(RecordedCollector())
    ours.register(StateCollector())
    return generate_latest(_web_registry()) + generate_latest(ours)
