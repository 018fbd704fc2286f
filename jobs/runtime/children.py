from typing import Any

from jobs.models import Job, JobStatus
from jobs.services import wake_job

_UNKNOWN = object()


def wake_parent(sender: Any, job_id: str, status: str, parent_id: Any = _UNKNOWN,
                **kwargs: Any) -> None:
    """A child job ended: wake the parent if it is waiting for a child. Senders that
    have the row pass `parent_id`, which saves a query on every job's end."""
    if parent_id is _UNKNOWN:
        parent_id = Job.objects.filter(pk=job_id).values_list("parent_id", flat=True).first()
    if parent_id is None:
        return
    if Job.objects.filter(pk=parent_id, status=JobStatus.WAITING,
                          wait_reason="child job").exists():
        wake_job(job_id=str(parent_id), reason=f"child job {job_id} {status}")
