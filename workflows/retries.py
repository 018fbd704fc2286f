"""Retrying a failed run goes on from the node that failed.

The runtime keeps a retried job's finished steps, so by itself a run would replay its
failed node's finished parts (the join of branches that failed, the wait of an agent
whose job failed) and fail the same way. When a workflow run (or branch) is retried,
this forgets the failed node's steps and what ran after it (its `on_failure` nodes),
retries the child jobs the node started that failed (their finished steps, paid model
calls among them, stay), and reopens its checkpoint if it had one. A cancelled run,
retried, retries the children its waiting nodes were waiting for (cancelled with it)."""

from typing import Any

from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus, JobStep, StepStatus
from jobs.services import job_retry
from workflows.models import EventWait

RETRIED_CHILDREN = (JobStatus.FAILED, JobStatus.CANCELLED)


def rewind_failed_node(sender: Any, job: Job, **kwargs: Any) -> None:
    """`job_retried` receiver for `workflow` and `workflow-branch` jobs."""
    if job.job_type not in ("workflow", "workflow-branch"):
        return
    # The node that failed the run: its record says so (`fatal`; what ran after it, the
    # on_failure nodes, may have failed too), or else its step failed with an error no
    # node caught.
    failed = (
        JobStep.objects.filter(job=job, output__fatal=True).order_by("position").first()
        or JobStep.objects.filter(job=job, status=StepStatus.FAILED).order_by("-position").first()
    )
    if failed is None:  # cancelled: what it waited for was cancelled with it
        _retry_children(
            job, [s.key for s in JobStep.objects.filter(job=job, status=StepStatus.WAITING)]
        )
        return
    node_key = failed.key.split(":", 1)[0]
    node_steps = JobStep.objects.filter(
        job=job, key__startswith=f"{node_key}:"
    ) | JobStep.objects.filter(job=job, key=node_key)
    first = min(step.position for step in node_steps)
    forgotten = list(
        JobStep.objects.filter(job=job, position__gte=first).values_list("key", flat=True)
    )
    JobStep.objects.filter(job=job, position__gte=first).delete()
    Checkpoint.objects.filter(job=job, key__in=forgotten).exclude(
        status=CheckpointStatus.PENDING
    ).update(status=CheckpointStatus.CANCELLED)
    EventWait.objects.filter(job=job, key__in=forgotten).delete()
    _retry_children(job, [node_key])


def _retry_children(job: Job, keys: list[str]) -> None:
    """Retry the failed or cancelled child jobs started by the nodes of these step keys
    (a child's idempotency key holds the key of the node that started it)."""
    nodes = {key.split(":", 1)[0] for key in keys}
    for child in Job.objects.filter(parent=job, status__in=RETRIED_CHILDREN):
        if any(f":{node}:" in f"{child.idempotency_key}:" for node in nodes):
            job_retry(job=child)
