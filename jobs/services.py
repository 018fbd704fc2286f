"""Every change of a job's state goes through these functions."""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from accounts.models import Organization
from accounts.services import default_organization
from agents.models import Agent, AgentStatus
from core import logs, metrics
from jobs.models import TERMINAL_STATUSES, Job, JobStatus, JobStep, StepStatus
from jobs.runtime.events import append_event
from jobs.runtime.queue import enqueue_on_commit
from jobs.runtime.registry import get_handler
from jobs.runtime.signals import job_finished

logger = logging.getLogger(__name__)


class JobError(Exception):
    """A request about a job that cannot be carried out (bad input, wrong state)."""


class JobConflict(JobError):
    """The job's current state does not allow the request."""


def _validate(job_type: str, input: Any, priority: int, max_attempts: int | None) -> None:
    spec = get_handler(job_type)  # raises UnknownJobType with the list of known types
    if not isinstance(input, dict):
        raise JobError("input must be a JSON object")
    if spec.input_schema is not None:
        problems = [f"{'.'.join(map(str, e.absolute_path)) or 'input'}: {e.message}"
                    for e in Draft202012Validator(spec.input_schema).iter_errors(input)]
        if problems:
            raise JobError(f"invalid input for {job_type}: " + "; ".join(problems))
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise JobError("priority must be an integer from 0 to 9")
    if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
        raise JobError("max_attempts must be a positive integer")


def job_depth(job: Job) -> int:
    """0 for a top-level job, 1 for its child, and so on."""
    depth, parent_id = 0, job.parent_id
    while parent_id is not None and depth <= settings.COUNTERSIGN_MAX_JOB_DEPTH:
        depth += 1
        parent_id = Job.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return depth


def child_depth_error(parent: Job) -> str:
    """Why `parent` may not start a child job, or ""."""
    limit = settings.COUNTERSIGN_MAX_JOB_DEPTH
    if job_depth(parent) + 1 > limit:
        return (f"jobs may nest at most {limit} deep (COUNTERSIGN_MAX_JOB_DEPTH); "
                f"this job cannot start another")
    return ""


def _runnable_agent(agent: Agent | None, input: dict[str, Any],
                    organization: Organization) -> Agent | None:
    """The job's agent: given, or named by `input.agent_id` (an `agent-task` started
    through the jobs API or by `run_job`), so its cap and status apply however the job
    was made. It must be the organization's, not deleted, not offline."""
    agent_id = input.get("agent_id")
    if agent is None and isinstance(agent_id, int) and not isinstance(agent_id, bool):
        agent = Agent.objects.filter(pk=agent_id, organization=organization).first()
        if agent is None:
            raise JobError(f"agent {agent_id} does not exist in this organization")
    if agent is None:
        return None
    if agent.organization_id != organization.pk:
        raise JobError(f"agent {agent.name!r} belongs to another organization")
    if agent.deleted_at is not None:
        raise JobError(f"agent {agent.name!r} was deleted")
    if agent.status == AgentStatus.OFFLINE:
        raise JobError(f"agent {agent.name!r} is offline; set it idle to run it")
    return agent


def job_create(*, job_type: str, input: dict[str, Any] | None = None, priority: int = 5,
               created_by: User | None = None, idempotency_key: str = "",
               parent: Job | None = None, max_attempts: int | None = None,
               organization: Organization | None = None, agent: Agent | None = None) -> Job:
    """Create a job and enqueue it once the transaction commits.

    With an idempotency key, a repeated request by the same creator returns the
    job the first request made instead of a new one.
    """
    input = {} if input is None else input
    _validate(job_type, input, priority, max_attempts)
    if parent is not None and (too_deep := child_depth_error(parent)):
        raise JobError(too_deep)
    if organization is None:  # a child job stays in its parent's organization
        organization = parent.organization if parent else default_organization()
    agent = _runnable_agent(agent, input, organization)
    if idempotency_key:
        existing = Job.objects.filter(created_by=created_by,
                                      idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    spec = get_handler(job_type)
    # The request that asked for the job; a child started by a run inherits its parent's.
    request_id = logs.get_request_id() or (parent.request_id if parent else "")
    attempts = max_attempts or (spec.retry.max_attempts if spec.retry
                                else settings.COUNTERSIGN_DEFAULT_MAX_ATTEMPTS)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                job_type=job_type, input=input, priority=priority, created_by=created_by,
                organization=organization, agent=agent,
                idempotency_key=idempotency_key, parent=parent, max_attempts=attempts,
                request_id=request_id)
            append_event(str(job.pk), "job.queued", {"job_type": job_type, "priority": priority})
            enqueue_on_commit(str(job.pk), priority)
            metrics.inc("agent_jobs_total", job_type=job_type, status=JobStatus.QUEUED)
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            return Job.objects.get(created_by=created_by, idempotency_key=idempotency_key)
        raise
    logger.info("job created", extra={"job_id": str(job.pk), "job_type": job_type})
    return job


def wake_job(*, job_id: str, reason: str = "") -> bool:
    """Make a waiting job runnable and enqueue it on commit. Call inside the
    transaction that resolved what it waited for."""
    woken = Job.objects.filter(pk=job_id, status=JobStatus.WAITING).update(
        status=JobStatus.QUEUED, wait_reason="", wake_at=None)
    if not woken:  # not waiting (cancelled meanwhile, say): nothing to wake
        return False
    priority, job_type = Job.objects.values_list("priority", "job_type").get(pk=job_id)
    append_event(str(job_id), "job.woken", {"reason": reason} if reason else {})
    enqueue_on_commit(str(job_id), priority)
    metrics.inc("agent_jobs_total", job_type=job_type, status=JobStatus.QUEUED)
    return True


@transaction.atomic
def job_cancel(*, job: Job, user: User | None = None) -> Job:
    """Cancel now if the job is not running; a running job stops at its next step."""
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if locked.status in TERMINAL_STATUSES:
        raise JobConflict(f"job is already {locked.status}")
    by = getattr(user, "username", None)
    if locked.status == JobStatus.RUNNING:
        locked.cancel_requested = True
        locked.save(update_fields=["cancel_requested", "updated_at"])
        append_event(str(locked.pk), "job.cancel_requested", {"by": by})
        return locked
    locked.status = JobStatus.CANCELLED
    locked.cancel_requested = True
    locked.finished_at = timezone.now()
    locked.wait_reason, locked.wake_at = "", None
    locked.save(update_fields=["status", "cancel_requested", "finished_at", "wait_reason",
                               "wake_at", "updated_at"])
    append_event(str(locked.pk), "job.cancelled", {"by": by})
    metrics.inc("agent_jobs_total", job_type=locked.job_type, status=JobStatus.CANCELLED)
    if locked.started_at is not None:
        metrics.observe("agent_jobs_duration_seconds",
                        (locked.finished_at - locked.started_at).total_seconds(),
                        job_type=locked.job_type, status=JobStatus.CANCELLED)
    job_finished.send(sender=Job, job_id=str(locked.pk), status=JobStatus.CANCELLED,
                      parent_id=locked.parent_id)
    return locked


@transaction.atomic
def job_retry(*, job: Job, user: User | None = None) -> Job:
    """Run a failed or cancelled job again. Finished steps stay memoized, so it
    continues from where it stopped."""
    locked = Job.objects.select_for_update().get(pk=job.pk)
    if locked.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobConflict(f"only failed or cancelled jobs can be retried; this one is "
                          f"{locked.status}")
    # Waits that were closed by the cancel are opened again by their waiters; a
    # failed step gets its whole retry budget again.
    JobStep.objects.filter(job=locked, status=StepStatus.WAITING).update(finished_at=None)
    JobStep.objects.filter(job=locked, status=StepStatus.FAILED).update(attempt=0)
    locked.status = JobStatus.QUEUED
    locked.attempts = 0
    locked.cancel_requested = False
    locked.finished_at = None
    locked.result = None
    locked.error_type = locked.error_message = locked.error_traceback = ""
    locked.save()
    append_event(str(locked.pk), "job.retried", {"by": getattr(user, "username", None)})
    enqueue_on_commit(str(locked.pk), locked.priority)
    metrics.inc("agent_jobs_total", job_type=locked.job_type, status=JobStatus.QUEUED)
    return locked
