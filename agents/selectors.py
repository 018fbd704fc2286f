"""Reads about agents that are more than a filter: their jobs and statistics."""

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, QuerySet

from agents.models import Agent
from agents.runs import agent_key
from jobs.models import TERMINAL_STATUSES, Job, JobStatus


def agent_jobs(agent: Agent) -> QuerySet[Job]:
    """The agent's executions: the jobs of its concurrency key."""
    return Job.objects.filter(concurrency_key=agent_key(agent.pk))


def agent_statistics(agent: Agent) -> dict[str, Any]:
    """From the agent's jobs, in one query: a read of committed rows, so concurrent
    runs cannot make it drift the way a counter updated by each run could."""
    finished = Q(status__in=TERMINAL_STATUSES)
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    row = agent_jobs(agent).aggregate(
        executions=Count("pk"),
        finished=Count("pk", filter=finished),
        succeeded=Count("pk", filter=Q(status=JobStatus.SUCCEEDED)),
        avg_tokens_in=Avg("tokens_in", filter=finished),
        avg_tokens_out=Avg("tokens_out", filter=finished),
        avg_cost=Avg("cost", filter=finished & Q(cost__isnull=False)),
        avg_duration=Avg(duration, filter=finished & Q(started_at__isnull=False)),
    )
    avg_duration: timedelta | None = row["avg_duration"]
    return {
        "executions": row["executions"],
        "finished": row["finished"],
        "succeeded": row["succeeded"],
        "success_rate": round(row["succeeded"] / row["finished"], 4) if row["finished"] else None,
        "average_tokens_in": round(row["avg_tokens_in"], 1) if row["avg_tokens_in"] else 0,
        "average_tokens_out": round(row["avg_tokens_out"], 1) if row["avg_tokens_out"] else 0,
        "average_cost": None if row["avg_cost"] is None else str(round(row["avg_cost"], 6)),
        "average_duration_seconds": None
        if avg_duration is None
        else round(avg_duration.total_seconds(), 3),
    }
