"""Workflow metrics, under the names our users know:
`workflow_executions_total{workflow,status}` and
`workflow_step_duration_seconds{workflow,step_type}`.

The `workflow` label is a workflow's slug for the first MAX_WORKFLOW_LABELS workflows
that record anything (remembered in the metrics Redis, so every process agrees), and
`other` after them: an installation with thousands of workflows keeps its series few."""

from typing import Any

from django.conf import settings

from core import metrics
from core.metrics import Metric, register_metrics
from core.metrics.recorder import key
from core.redis import best_effort

MAX_WORKFLOW_LABELS = 50
OTHER = "other"
STEP_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    14400,
    86400,
)

register_metrics(
    Metric(
        "workflow_executions_total",
        "counter",
        ("workflow", "status"),
        "Workflow runs started (`started`) and ended, by final status.",
    ),
    Metric(
        "workflow_step_duration_seconds",
        "histogram",
        ("workflow", "step_type"),
        "Seconds one node took, from its start to its record (waits included).",
        STEP_BUCKETS,
    ),
)


_admitted: set[str] = set()  # this process's cache of labels already in the set


def workflow_label(slug: str) -> str:
    if slug in _admitted:
        return slug

    def admit(redis: Any) -> str:
        labels = key("workflow-labels")
        if redis.sismember(labels, slug) or (
            redis.scard(labels) < MAX_WORKFLOW_LABELS and redis.sadd(labels, slug) is not None
        ):
            _admitted.add(slug)
            return slug
        return OTHER

    return (
        best_effort(settings.COUNTERSIGN_METRICS_REDIS_URL, admit, what="metrics recording")
        or OTHER
    )


def run_counted(slug: str, status: str) -> None:
    metrics.inc("workflow_executions_total", workflow=workflow_label(slug), status=status)


def node_finished(slug: str, node_type: str, seconds: float) -> None:
    """A node's record was written (once: replays do not run it)."""
    metrics.observe(
        "workflow_step_duration_seconds",
        seconds,
        workflow=workflow_label(slug),
        step_type=node_type,
    )
