"""The reconciler: the database is the truth, the broker only a doorbell.

Run by celery beat every few seconds. It re-sends run messages for jobs that
are runnable but have nothing running them: a message lost with a Redis
restart, an enqueue that failed, a countdown that lived in a dead worker's
memory, or a run whose worker was killed (its lease expires).
"""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.utils import timezone

from jobs.models import Job
from jobs.runtime.queue import send_run_message

logger = logging.getLogger(__name__)


def broker_backlog() -> int | None:
    """Messages waiting in the default queue, or None if the broker cannot say."""
    try:
        with current_app.connection_for_read() as conn:
            declared = conn.default_channel.queue_declare(
                queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True
            )
            return int(declared.message_count)
    except Exception as exc:
        if "NOT_FOUND" in str(exc):  # (404) on Redis and RabbitMQ alike
            return 0  # no such queue: Redis drops a list once it is empty
        logger.debug("could not read the broker's queue depth: %s", exc)
        return None  # an unreachable broker: the normal grace


def queued_grace_seconds(backlog: int | None) -> float:
    """How long a queued job's message may go unanswered before it is sent again.

    With an empty queue every message is in a worker's hands or lost (a broker restarted
    empty): with prefetch 1, a worker holds only what it is about to run. So a queued
    job whose message is older than a short grace is sent again, without waiting the
    normal grace. A backlog may hold the message still: then only after a long one."""
    if backlog == 0:
        return settings.COUNTERSIGN_RECONCILE_IDLE_GRACE_SECONDS
    if backlog:
        return settings.COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS
    return settings.COUNTERSIGN_RECONCILE_GRACE_SECONDS


def reconcile(limit: int | None = None) -> int:
    """Re-enqueue stranded runnable jobs, most urgent and oldest first, in one bounded batch."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.COUNTERSIGN_RECONCILE_GRACE_SECONDS)
    queued_grace = now - timedelta(seconds=queued_grace_seconds(broker_backlog()))
    batch = list(
        Job.objects.stranded(now=now, grace=grace, queued_grace=queued_grace)
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
