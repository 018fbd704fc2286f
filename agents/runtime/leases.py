"""Job leases: a run owns its job row for a while, renewing as it goes.

A second delivery of the same message (Redis visibility timeout, a reconciler
re-send) finds the lease taken and does nothing.
"""

import os
import socket
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import Job, JobStatus


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


def claim(job_id: str, owner: str) -> Job | None:
    """Take the job's lease with one conditional UPDATE; None if it is not ours to run."""
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    taken = (
        Job.objects.filter(runnable_q(now) & free, pk=job_id)
        .update(
            status=JobStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=lease_expiry(),
            started_at=Coalesce(F("started_at"), Value(now)),
            wait_reason="",
            wake_at=None,
            # Taking over an abandoned run (its worker died) counts as a failed
            # attempt, so a step that always kills its worker cannot loop forever.
            attempts=Case(When(attempts=0, then=Value(1)),
                          When(status=JobStatus.RUNNING, then=F("attempts") + 1),
                          default=F("attempts"), output_field=models.PositiveIntegerField()),
        )
    )
    if not taken:
        return None
    return Job.objects.get(pk=job_id)


def renew(job_id: str, owner: str) -> tuple[bool, bool]:
    """Extend the lease. Returns (still ours, cancel requested)."""
    renewed = Job.objects.filter(pk=job_id, lease_owner=owner).update(
        lease_expires_at=lease_expiry()
    )
    if not renewed:
        return False, False
    cancel = Job.objects.filter(pk=job_id).values_list("cancel_requested", flat=True).first()
    return True, bool(cancel)
