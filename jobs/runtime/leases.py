"""Job leases: a run owns its job row for a while, renewing as it goes.

A second delivery of the same message (Redis visibility timeout, a reconciler
re-send) finds the lease taken and does nothing.
"""

import os
import socket
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job, JobStatus


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_expiry() -> datetime:
    return timezone.now() + timedelta(seconds=settings.COUNTERSIGN_LEASE_SECONDS)


def runnable_q(now: datetime) -> Q:
    """Jobs a run may take now: queued, due timers/retries, or abandoned runs."""
    return (
        Q(status=JobStatus.QUEUED)
        | Q(status__in=[JobStatus.RETRYING, JobStatus.WAITING], wake_at__lte=now)
        | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    )


_CLAIM_SQL = """
UPDATE {job} SET
    status = %s, lease_owner = %s, lease_expires_at = %s, updated_at = %s,
    started_at = COALESCE(started_at, %s), wait_reason = '', wake_at = NULL,
    attempts = CASE WHEN attempts = 0 THEN 1 WHEN status = %s THEN attempts + 1
                    ELSE attempts END
WHERE id = %s
  AND (status = %s
       OR (status IN (%s, %s) AND wake_at <= %s)
       OR (status = %s AND lease_expires_at < %s))
  AND (lease_expires_at IS NULL OR lease_expires_at < %s)
RETURNING {columns},
    (SELECT COALESCE(MAX(seq), 0) FROM {event} WHERE job_id = {job}.id) AS last_event_seq,
    EXISTS (SELECT 1 FROM {step} WHERE job_id = {job}.id) AS has_steps
"""


def claim(job_id: str, owner: str) -> Job | None:
    """Take the job's lease; None if it is not ours to run.

    One conditional UPDATE … RETURNING (PostgreSQL, SQLite ≥ 3.35) takes the
    lease and reads the row and its last event number in a single round trip.
    The conditions are `runnable_q` plus a free lease. Taking over an
    abandoned run (its worker died) counts as a failed attempt, so a step that
    always kills its worker cannot loop forever.
    """
    from jobs.models import JobEvent, JobStep

    try:
        pk = Job._meta.pk.get_db_prep_value(uuid.UUID(str(job_id)), connection)  # type: ignore[union-attr]
    except ValueError:
        return None
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    expires = connection.ops.adapt_datetimefield_value(lease_expiry())
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in Job._meta.concrete_fields)
    sql = _CLAIM_SQL.format(job=connection.ops.quote_name(Job._meta.db_table),
                            event=connection.ops.quote_name(JobEvent._meta.db_table),
                            step=connection.ops.quote_name(JobStep._meta.db_table),
                            columns=columns)
    params = [JobStatus.RUNNING, owner, expires, now, now, JobStatus.RUNNING, pk,
              JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.WAITING, now,
              JobStatus.RUNNING, now, now]
    claimed = list(Job.objects.raw(sql, params))
    return claimed[0] if claimed else None


def renew(job_id: str, owner: str, expires: datetime) -> tuple[bool, bool]:
    """Extend the lease to `expires`. Returns (still ours, cancel requested)."""
    renewed = Job.objects.filter(pk=job_id, lease_owner=owner).update(lease_expires_at=expires)
    if not renewed:
        return False, False
    cancel = Job.objects.filter(pk=job_id).values_list("cancel_requested", flat=True).first()
    return True, bool(cancel)
