"""Reads of jobs that are more than a filter."""

import uuid

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import Organization
from jobs.models import Job, JobEvent, JobStep

EVENTS_PAGE = 1000


def job_depth(job: Job) -> int:
    """0 for a top-level job, 1 for its child, and so on (counted only so far as the
    depth limit needs)."""
    depth, parent_id = 0, job.parent_id
    while parent_id is not None and depth <= settings.COUNTERSIGN_MAX_JOB_DEPTH:
        depth += 1
        parent_id = Job.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return depth


def jobs_of(organization: Organization | None) -> QuerySet[Job]:
    """The jobs a member of `organization` may see (none without one)."""
    if organization is None:
        return Job.objects.none()
    return Job.objects.filter(organization=organization).select_related("created_by")


def job_steps(job: Job) -> QuerySet[JobStep]:
    return job.steps.order_by("position")


def job_events(
    job_id: uuid.UUID | str, *, after: int = 0, limit: int = EVENTS_PAGE
) -> list[JobEvent]:
    """The job's events after `after`, in order, at most `limit` of them."""
    return list(JobEvent.objects.filter(job_id=job_id, seq__gt=after).order_by("seq")[:limit])
