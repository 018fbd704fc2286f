"""The reconciler: the database is the truth, the broker only a doorbell.

Run by celery beat every few seconds. It re-sends run messages for jobs that
are runnable but have nothing running them: a message lost with a Redis
restart, an enqueue that failed, a countdown that lived in a dead worker's
memory, or a run whose worker was killed (its lease expires).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.runtime.queue import send_run_message

logger = logging.getLogger(__name__)


def broker_backlog() -> int | None:
    """Messages waiting in the default queue, or None if the broker cannot say."""
    from config.celery import app

    try:
        with app.connection_for_read() as conn:
            declared = conn.default_channel.queue_declare(
                queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True)
            return int(declared.message_count)
    except Exception as exc:  # an unreachable broker: assume the worst, re-send
        logger.debug("could not read the broker's queue depth: %s", exc)
        return None


def reconcile(limit: int | None = None) -> int:
    """Re-enqueue stranded runnable jobs, oldest first, in one bounded batch."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.COUNTERSIGN_RECONCILE_GRACE_SECONDS)
    stale_enqueue = Q(last_enqueued_at__isnull=True) | Q(last_enqueued_at__lt=grace)
    # A queued job's message may simply be waiting behind others; with a
    # backlog, re-sending it every pass would only grow the backlog.
    queued_grace = grace
    if broker_backlog():
        queued_grace = now - timedelta(
            seconds=settings.COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS)
    stale_queued = Q(last_enqueued_at__isnull=True) | Q(last_enqueued_at__lt=queued_grace)
    stranded = (
        Q(status=JobStatus.QUEUED) & stale_queued
        # A due timer or retry whose countdown message should have fired by now.
        | Q(status__in=[JobStatus.RETRYING, JobStatus.WAITING], wake_at__lt=grace) & stale_enqueue
        # A run whose worker died: its lease ran out.
        | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now) & stale_enqueue
    )
    batch = list(
        Job.objects.filter(stranded)
        .order_by("-priority", "created_at")
        .values_list("pk", "priority")[: limit or settings.COUNTERSIGN_RECONCILE_BATCH]
    )
    if not batch:
        return 0
    Job.objects.filter(pk__in=[pk for pk, _ in batch]).update(last_enqueued_at=now)
    for pk, priority in batch:
        send_run_message(str(pk), priority)
    logger.info("reconciler re-enqueued %d job(s)", len(batch))
    return len(batch)
