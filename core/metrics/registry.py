"""Which metrics exist: each app registers its own (names, kinds, labels, buckets) and
the collectors of its gauges; `/metrics` renders whatever is registered.

Counters and histograms are recorded where things happen (any web, worker or beat
process, on any host) into one Redis hash per metric, and rendered from there;
gauges are read from the database when scraped. See docs/operations.md.
"""

from dataclasses import dataclass

from prometheus_client.registry import Collector


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" or "histogram"
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


METRICS: dict[str, Metric] = {}
COLLECTORS: list[Collector] = []


def register_metrics(*metrics: Metric) -> None:
    for metric in metrics:
        if metric.kind not in ("counter", "histogram"):
            raise ValueError(f"{metric.name}: kind must be counter or histogram")
        existing = METRICS.get(metric.name)
        if existing is not None and existing != metric:
            raise ValueError(f"metric {metric.name} is already registered differently")
        METRICS[metric.name] = metric


def register_collector(collector: Collector) -> None:
    """A collector of gauges read when scraped (the present state, from the database)."""
    if not any(type(known) is type(collector) for known in COLLECTORS):
        COLLECTORS.append(collector)
