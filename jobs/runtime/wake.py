"""Waking a waiting job: the resume primitive every kind of wait ends with."""

from core import metrics
from jobs.models import Job, JobStatus
from jobs.runtime.events import append_event
from jobs.runtime.queue import enqueue_on_commit


def wake_job(*, job_id: str, reason: str = "") -> bool:
    """Make a waiting job runnable and enqueue it on commit. Call it inside the
    transaction that resolved what the job waited for (a decision, a child's end), so
    the wake-up commits with its cause. False if the job was not waiting."""
    woken = Job.objects.filter(pk=job_id, status=JobStatus.WAITING).update(
        status=JobStatus.QUEUED, wait_reason="", wake_at=None
    )
    if not woken:  # not waiting (cancelled meanwhile, say): nothing to wake
        return False
    priority, job_type = Job.objects.values_list("priority", "job_type").get(pk=job_id)
    append_event(str(job_id), "job.woken", {"reason": reason} if reason else {})
    enqueue_on_commit(str(job_id), priority)
    metrics.inc("agent_jobs_total", job_type=job_type, status=JobStatus.QUEUED)
    return True
