"""Recording counters and histograms into Redis, shared by every process and host.

Each metric is one Redis hash; its fields are the label values (JSON), and for a
histogram also the bucket, `sum` and `count`. HINCRBYFLOAT is atomic, so any
number of processes add to the same figures, a process that exits takes nothing
with it, and every web process renders the same totals. Recording is best effort:
if Redis is unreachable the figures are dropped (core.redis.best_effort: logged once
per back-off), never the work being measured.

Records wait for the surrounding transaction to commit, so rolled-back work is
never counted. Inside `batched()` (a job run) they are then kept in memory and
sent in one pipeline at the end of the block, or sooner once a second has passed;
elsewhere each is sent at once.
"""

import bisect
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction

from core.metrics.registry import METRICS, Metric
from core.redis import best_effort, redis_client

logger = logging.getLogger(__name__)

_local = threading.local()
BATCH_SECONDS = 1.0


def key(metric: str) -> str:
    return f"{settings.COUNTERSIGN_METRICS_PREFIX}:{metric}"


def labels_field(values: tuple[str, ...]) -> str:
    return json.dumps(values, separators=(",", ":"))


def client() -> Any:
    """The metrics Redis (COUNTERSIGN_METRICS_REDIS_URL must be set)."""
    return redis_client(settings.COUNTERSIGN_METRICS_REDIS_URL, timeout=1.0)


def _label_values(metric: Metric, labels: dict[str, Any]) -> tuple[str, ...]:
    if set(labels) != set(metric.labels):
        raise ValueError(f"{metric.name} takes labels {metric.labels}, not {tuple(labels)}")
    return tuple(str(labels[name]) for name in metric.labels)


def inc(name: str, amount: float = 1.0, **labels: Any) -> None:
    metric = METRICS[name]
    _record([(key(name), labels_field(_label_values(metric, labels)), float(amount))])


def observe(name: str, value: float, **labels: Any) -> None:
    """A histogram observation: its bucket, the sum and the count. Buckets are stored
    uncumulated (the first bucket whose bound is ≥ value, or +Inf) and summed when
    rendered."""
    metric = METRICS[name]
    field = labels_field(_label_values(metric, labels))
    index = bisect.bisect_left(metric.buckets, value)
    bucket = str(metric.buckets[index]) if index < len(metric.buckets) else "+Inf"
    _record(
        [
            (key(name), f"{field}|{bucket}", 1.0),
            (key(name), f"{field}|sum", float(value)),
            (key(name), f"{field}|count", 1.0),
        ]
    )


def _record(increments: list[tuple[str, str, float]]) -> None:
    # Inside a transaction, only once it commits: rolled-back work is not counted.
    transaction.on_commit(lambda: _keep(increments))


def _keep(increments: list[tuple[str, str, float]]) -> None:
    pending = getattr(_local, "pending", None)
    if pending is None:
        send(increments)
        return
    pending.extend(increments)
    # A long run sends as it goes, so a worker killed mid-run loses at most a second
    # of figures (tokens already paid for among them).
    if time.monotonic() - _local.since >= BATCH_SECONDS:
        _local.pending, _local.since = [], time.monotonic()
        send(pending)


@contextmanager
def batched() -> Iterator[None]:
    """Keep this thread's records and send them in one round trip at the end."""
    outer = getattr(_local, "pending", None)
    if outer is not None:  # already batching: the outer block sends
        yield
        return
    _local.pending, _local.since = [], time.monotonic()
    try:
        yield
    finally:
        pending, _local.pending = _local.pending, None
        send(pending)


def send(increments: list[tuple[str, str, float]]) -> None:
    if not increments:
        return

    def add(redis: Any) -> None:
        pipe = redis.pipeline(transaction=False)
        for redis_key, field, amount in increments:
            pipe.hincrbyfloat(redis_key, field, amount)
        pipe.execute()

    best_effort(settings.COUNTERSIGN_METRICS_REDIS_URL, add, what="metrics recording")


def read_all() -> dict[str, dict[str, float]]:
    """Every metric's hash, as {metric: {field: value}}."""
    if not settings.COUNTERSIGN_METRICS_REDIS_URL:
        return {}
    pipe = client().pipeline(transaction=False)
    names = list(METRICS)
    for name in names:
        pipe.hgetall(key(name))
    return {
        name: {f.decode(): float(v) for f, v in raw.items()}
        for name, raw in zip(names, pipe.execute(), strict=True)
    }


def forget_all() -> int:
    """Delete every key under COUNTERSIGN_METRICS_PREFIX (test and benchmark runs,
    which use a prefix of their own, clean up with it)."""
    if not settings.COUNTERSIGN_METRICS_REDIS_URL:
        return 0
    redis = client()
    keys = list(redis.scan_iter(match=f"{settings.COUNTERSIGN_METRICS_PREFIX}:*", count=500))
    return int(redis.delete(*keys)) if keys else 0
