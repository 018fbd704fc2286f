from typing import Any

from agents.models import Job, JobStatus
from agents.services import wake_job


def wake_parent(sender: Any, job_id: str, status: str, **kwargs: Any) -> None:
    """A child job ended: wake the parent if it is waiting for a child."""
    parent_id = Job.objects.filter(pk=job_id).values_list("parent_id", flat=True).first()
    if parent_id is None:
        return
    if Job.objects.filter(pk=parent_id, status=JobStatus.WAITING,
                          wait_reason="child job").exists():
        wake_job(job_id=str(parent_id), reason=f"child job {job_id} {status}")
