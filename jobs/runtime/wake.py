"""Waking a waiting job: the resume primitive every kind of wait ends with."""

import uuid

from django.db import connection
from django.utils import timezone

from core import metrics
from jobs.models import Job, JobStatus
from jobs.runtime.events import append_event
from jobs.runtime.queue import prompt_on_commit

# Queued, marked sent and read back in one round trip (PostgreSQL, SQLite ≥ 3.35).
_WAKE_SQL = """
UPDATE {job} SET status = %(queued)s, wait_reason = '', wake_at = NULL, last_enqueued_at = %(now)s
WHERE id = %(pk)s AND status = %(waiting)s
RETURNING priority, job_type
"""


def wake_job(*, job_id: str, reason: str = "") -> bool:
    """Make a waiting job runnable and enqueue it on commit. Call it inside the
    transaction that resolved what the job waited for (a decision, a child's end), so
    the wake-up commits with its cause. False if the job was not waiting."""
    params = {
        "queued": JobStatus.QUEUED,
        "waiting": JobStatus.WAITING,
        "now": connection.ops.adapt_datetimefield_value(timezone.now()),
        "pk": Job._meta.pk.get_db_prep_value(uuid.UUID(str(job_id)), connection),
    }
    with connection.cursor() as cursor:
        cursor.execute(_WAKE_SQL.format(job=connection.ops.quote_name(Job._meta.db_table)), params)
        row = cursor.fetchone()
    if row is None:  # not waiting (cancelled meanwhile, say): nothing to wake
        return False
    priority, job_type = row
    append_event(str(job_id), "job.woken", {"reason": reason} if reason else {})
    prompt_on_commit(str(job_id), priority)  # its enqueue time is written above
    metrics.inc("agent_jobs_total", job_type=job_type, status=JobStatus.QUEUED)
    return True
