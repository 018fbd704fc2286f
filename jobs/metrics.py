"""The runtime's metrics: jobs by status and duration, steps, and gauges of what is
queued, waiting and running now, and of the workers that are up."""

from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.metrics import Metric as Definition
from core.metrics import register_collector, register_metrics
from core.metrics.recorder import client
from jobs.heartbeat import worker_key
from jobs.models import Job, JobStatus

# Seconds: from a sub-second step to a job that waited a day for a person.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

register_metrics(
    Definition(
        "agent_jobs_total",
        "counter",
        ("job_type", "status"),
        "Jobs reaching each status (a job reaching `running` or `waiting` again counts again).",
    ),
    Definition(
        "agent_jobs_duration_seconds",
        "histogram",
        ("job_type", "status"),
        "Seconds from a job's first start to its end, by final status.",
        DURATION_BUCKETS,
    ),
    Definition(
        "agent_job_steps_total",
        "counter",
        ("job_type", "status"),
        "Step executions that finished, by outcome (replayed steps are not counted).",
    ),
    Definition(
        "agent_step_duration_seconds",
        "histogram",
        ("job_type",),
        "Seconds one step execution took.",
        STEP_BUCKETS,
    ),
)


class JobStateCollector(Collector):
    """Jobs waiting (by reason), queued and running now; workers whose heartbeat is fresh."""

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "agent_jobs_waiting", "Jobs waiting, by what they wait for.", labels=["reason"]
        )
        for reason, count in (
            Job.objects.filter(status=JobStatus.WAITING)
            .values("wait_reason")
            .annotate(n=Count("pk"))
            .order_by("wait_reason")
            .values_list("wait_reason", "n")
        ):
            waiting.add_metric([reason or "unknown"], count)
        yield waiting

        queued = Job.objects.filter(status=JobStatus.QUEUED).count()
        yield GaugeMetricFamily("agent_jobs_queued", "Jobs queued for a worker.", value=queued)
        active = Job.objects.filter(
            status=JobStatus.RUNNING, lease_expires_at__gt=timezone.now()
        ).count()
        yield GaugeMetricFamily(
            "agent_worker_active_jobs", "Jobs a worker is running now (a live lease).", value=active
        )

        workers = GaugeMetricFamily(
            "agent_workers_up", "1 for each worker whose heartbeat is fresh.", labels=["worker"]
        )
        if settings.COUNTERSIGN_METRICS_REDIS_URL:
            for raw in sorted(client().scan_iter(match=worker_key("*"), count=500)):
                workers.add_metric([raw.decode().removeprefix(worker_key(""))], 1)
        yield workers


register_collector(JobStateCollector())
