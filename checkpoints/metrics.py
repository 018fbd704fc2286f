"""Checkpoint metrics: how many open and settle, how long people take to decide, and
gauges of what waits for a person now."""

from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from checkpoints.models import Checkpoint, CheckpointStatus
from core.metrics import Metric as Definition
from core.metrics import register_collector, register_metrics

# Seconds: from a reviewer at the screen to one back from a week away.
DECISION_BUCKETS = (
    1,
    5,
    15,
    30,
    60,
    300,
    900,
    1800,
    3600,
    4 * 3600,
    8 * 3600,
    86400,
    3 * 86400,
    7 * 86400,
)

register_metrics(
    Definition(
        "agent_checkpoints_total",
        "counter",
        ("kind", "status"),
        "Checkpoints reaching each status (`pending` when opened).",
    ),
    Definition(
        "agent_checkpoint_decision_seconds",
        "histogram",
        ("kind",),
        "Seconds from a checkpoint's opening to its decision.",
        DECISION_BUCKETS,
    ),
)


class PendingCheckpointCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        pending = GaugeMetricFamily(
            "agent_checkpoints_pending", "Checkpoints waiting for a person.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "agent_checkpoint_oldest_pending_seconds",
            "Age of the oldest pending checkpoint.",
            labels=["kind"],
        )
        for row in (
            Checkpoint.objects.filter(status=CheckpointStatus.PENDING)
            .values("kind")
            .annotate(n=Count("pk"), first=Min("opened_at"))
            .order_by("kind")
        ):
            pending.add_metric([row["kind"]], row["n"])
            oldest.add_metric([row["kind"]], max(0.0, (now - row["first"]).total_seconds()))
        yield pending
        yield oldest


register_collector(PendingCheckpointCollector())
