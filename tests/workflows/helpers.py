"""Driving workflow runs in the test process: every runnable job of a run's tree is run
(`run_job`, as a worker would) until nothing is left to run."""

from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus, JobStep, StepStatus
from jobs.runtime.engine import run_job
from workflows.models import EventWait, Workflow, WorkflowRun
from workflows.services import workflow_create, workflow_run_start


def tree(root: Any) -> list[Job]:
    """The run's job and every job below it."""
    found, frontier = [], [root]
    while frontier:
        jobs = list(Job.objects.filter(pk__in=frontier))
        found += jobs
        frontier = list(Job.objects.filter(parent__in=jobs).values_list("pk", flat=True))
    return found


def settle(root: Any, *, timers: bool = False, limit: int = 200) -> Job:
    """Run what is runnable in the run's tree until nothing is; with `timers`, due every
    timer and retry first. The root job, refreshed."""
    for _ in range(limit):
        runnable = [
            j
            for j in tree(root)
            if j.status == JobStatus.QUEUED
            or (
                timers
                and j.status in (JobStatus.RETRYING, JobStatus.WAITING)
                and j.wake_at is not None
            )
        ]
        if not runnable:
            break
        for job in runnable:
            if timers and job.wake_at is not None:
                _due_now(job)
            run_job(str(job.pk))
    return Job.objects.get(pk=root)


def make(
    organization: Organization, definition: dict[str, Any], slug: str = "flow", **fields: Any
) -> Workflow:
    return workflow_create(
        organization=organization, slug=slug, name=slug.title(), definition=definition, **fields
    )


def start(workflow: Workflow, input: dict[str, Any] | None = None, **kwargs: Any) -> WorkflowRun:
    return workflow_run_start(workflow=workflow, input=input or {}, **kwargs)


def pending(root: Any) -> list[Checkpoint]:
    """The run's pending checkpoints (its own and its branches'), oldest first."""
    jobs = [j.pk for j in tree(root)]
    return list(
        Checkpoint.objects.filter(job__in=jobs, status=CheckpointStatus.PENDING).order_by(
            "opened_at", "pk"
        )
    )


def outputs(root: Any) -> dict[str, Any]:
    job = Job.objects.get(pk=root)
    return (job.result or {}).get("output")


def steps_of(root: Any) -> list[str]:
    return list(Job.objects.get(pk=root).steps.order_by("position").values_list("key", flat=True))


def checkpoints_of(root: Any) -> Q:
    return Q(job__in=[j.pk for j in tree(root)])


def _due_now(job: Job) -> None:
    """Bring the job's timers forward to now: its wake time, a durable timer's end (kept
    in its step) and an event wait's timeout."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(wake_at=now)
    for step in JobStep.objects.filter(job=job, status=StepStatus.WAITING):
        if isinstance(step.output, dict) and "until" in step.output:
            JobStep.objects.filter(pk=step.pk).update(
                output={**step.output, "until": now.isoformat()}
            )
    EventWait.objects.filter(job=job, event__isnull=True, expires_at__isnull=False).update(
        expires_at=now
    )
