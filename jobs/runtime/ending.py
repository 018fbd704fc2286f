"""What every end of a job records besides its row and its event, whoever ends it (a
run, or `job_cancel` for a job that was not running): the metrics and the signal."""

from datetime import datetime

from core import metrics
from jobs.models import Job
from jobs.runtime.signals import job_finished


def job_ended(job: Job, status: str, finished_at: datetime) -> None:
    metrics.inc("agent_jobs_total", job_type=job.job_type, status=status)
    if job.started_at is not None:
        metrics.observe(
            "agent_jobs_duration_seconds",
            (finished_at - job.started_at).total_seconds(),
            job_type=job.job_type,
            status=status,
        )
    job_finished.send(
        sender=Job,
        job_id=str(job.pk),
        status=status,
        parent_id=job.parent_id,
        job_type=job.job_type,
    )
