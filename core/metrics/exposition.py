"""`/metrics`: what Prometheus scrapes.

Three sources, each right whatever the number of processes and hosts:
- the counters and histograms every process records in Redis (`recorder`);
- gauges of the present state, from the collectors the apps register (pending
  checkpoints, waiting jobs, running jobs, live workers), read when scraped;
- django-prometheus' HTTP, database and cache metrics of the web processes, which
  live in each process: with more than one web process, PROMETHEUS_MULTIPROC_DIR
  makes prometheus_client share them through files and this view merges them.
"""

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.metrics import recorder
from core.metrics.registry import COLLECTORS, METRICS


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
                yield _histogram(
                    name, definition.help, definition.labels, definition.buckets, fields
                )


def _histogram(
    name: str,
    help: str,
    labels: tuple[str, ...],
    bounds: tuple[float, ...],
    fields: dict[str, float],
) -> HistogramMetricFamily:
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
    for collector in COLLECTORS:
        ours.register(collector)
    return generate_latest(_web_registry()) + generate_latest(ours)
