"""Putting jobs on the broker. The broker is only a doorbell: the database is the truth."""

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import Job

logger = logging.getLogger(__name__)

# Stable names: messages already on the broker must still run after code moves.
RUN_JOB_TASK = "agents.run_job"
RECONCILE_TASK = "agents.reconcile"


def broker_priority(job_priority: int) -> int:
    """Map job priority (0 lowest … 9 most urgent) to the broker's scale.

    Redis (kombu) serves 0 first; RabbitMQ serves the highest number first.
    """
    if settings.CELERY_BROKER_URL.startswith(("amqp", "pyamqp")):
        return job_priority
    return 9 - job_priority


def send_run_message(job_id: str, priority: int, countdown: float | None = None) -> None:
    """Publish a run message now. Failures are logged: the reconciler re-sends."""
    try:
        current_app.send_task(
            RUN_JOB_TASK,
            args=[job_id],
            priority=broker_priority(priority),
            countdown=countdown if countdown and countdown > 0 else None,
        )
    except Exception:
        logger.exception(
            "could not publish run message; the reconciler will retry", extra={"job_id": job_id}
        )


def enqueue_on_commit(job_id: str, priority: int, countdown: float | None = None) -> None:
    """Record the enqueue time and publish once the surrounding transaction commits.

    A message sent before the commit could reach a worker that cannot see the row yet.
    """
    Job.objects.filter(pk=job_id).update(last_enqueued_at=timezone.now())
    prompt_on_commit(job_id, priority, countdown)


def prompt_on_commit(job_id: str, priority: int, countdown: float | None = None) -> None:
    """Publish after commit. A countdown message waits unacked in a worker's memory:
    it is lost with a Redis restart and trips RabbitMQ's consumer_timeout if long.
    So long delays send nothing; the reconciler fires them from `wake_at`."""
    if countdown and countdown > settings.COUNTERSIGN_MAX_COUNTDOWN_SECONDS:
        return
    transaction.on_commit(lambda: send_run_message(str(job_id), priority, countdown))


def wake_at_after(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)
