"""Every change of a job's state from outside a run goes through these functions:
the API, the admin, the command line and other apps call them alike."""

import hashlib
import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, ParamSpec

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from accounts.models import Organization
from accounts.services import default_organization
from core import logs, metrics
from core.schemas import MAX_JSON_DEPTH, json_problem
from jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobStatus, JobStep, StepStatus
from jobs.runtime import folded
from jobs.runtime.ending import job_ended
from jobs.runtime.errors import JobConflict, JobError
from jobs.runtime.events import append_event, publish, save_events
from jobs.runtime.queue import enqueue_on_commit, prompt_on_commit
from jobs.runtime.registry import HandlerSpec, JobOptions, get_handler
from jobs.runtime.signals import job_retried
from jobs.selectors import job_depth

logger = logging.getLogger(__name__)
P = ParamSpec("P")


def _validate(spec: HandlerSpec, input: Any, priority: int, max_attempts: int | None) -> None:
    if not isinstance(input, dict):
        raise JobError("input must be a JSON object", {"input": ["Expected a JSON object."]})
    # Stored as it is, and shown in the admin: as deep as any stored document, no NUL.
    if problem := json_problem(input, MAX_JSON_DEPTH):
        raise JobError(f"invalid input: {problem}", {"input": [problem]})
    if spec.input_schema is not None:
        problems = [
            f"{'.'.join(map(str, e.absolute_path)) or 'input'}: {e.message}"
            for e in Draft202012Validator(spec.input_schema).iter_errors(input)
        ]
        if problems:
            raise JobError(
                f"invalid input for {spec.job_type}: " + "; ".join(problems), {"input": problems}
            )
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise JobError(
            "priority must be an integer from 0 to 9", {"priority": ["An integer from 0 to 9."]}
        )
    if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
        raise JobError("max_attempts must be a positive integer")


def child_depth_error(parent: Job) -> str:
    """Why `parent` may not start a child job, or ""."""
    limit = settings.COUNTERSIGN_MAX_JOB_DEPTH
    if job_depth(parent) + 1 > limit:
        return (
            f"jobs may nest at most {limit} deep (COUNTERSIGN_MAX_JOB_DEPTH); "
            f"this job cannot start another"
        )
    return ""


def fitted_key(key: str) -> str:
    """An idempotency key as stored: one longer than the column (keys built from nested
    step keys can be) is kept as its digest, so the same key still finds the same job and
    two keys alike in their first 200 characters stay two."""
    limit = Job._meta.get_field("idempotency_key").max_length or 0
    if len(key) <= limit:
        return key
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def job_get_or_create(
    *,
    job_type: str,
    input: dict[str, Any] | None = None,
    priority: int = 5,
    created_by: User | None = None,
    idempotency_key: str = "",
    parent: Job | None = None,
    max_attempts: int | None = None,
    organization: Organization | None = None,
) -> tuple[Job, bool]:
    """Create a job and enqueue it once the transaction commits; True if it is new.

    The job type's `prepare` hook may refuse it or give it options (its concurrency
    key). With an idempotency key, a repeated request by the same creator returns the
    job the first request made (and False), whatever has changed since: nothing is
    checked or prepared again. Unless that job is of another type or organization: a
    key is for repeating one request, and reusing it for another is a JobConflict (a
    plain job's key must not stand in for a workflow run's, say).
    """
    idempotency_key = fitted_key(idempotency_key)
    if idempotency_key:
        existing = Job.objects.filter(
            created_by=created_by, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _repeated(existing, job_type, organization), False
    input = {} if input is None else input
    spec = get_handler(job_type)  # UnknownJobType names the known ones
    _validate(spec, input, priority, max_attempts)
    if parent is not None and (too_deep := child_depth_error(parent)):
        raise JobError(too_deep)
    if organization is None:  # a child job stays in its parent's organization
        organization = parent.organization if parent else default_organization()
    options = spec.prepare(input, organization) if spec.prepare else JobOptions()
    # The request that asked for the job; a child started by a run inherits its parent's.
    request_id = logs.get_request_id() or (parent.request_id if parent else "")
    attempts = max_attempts or (
        spec.retry.max_attempts if spec.retry else settings.COUNTERSIGN_DEFAULT_MAX_ATTEMPTS
    )
    now = timezone.now()
    job = Job(
        job_type=job_type,
        input=input,
        priority=priority,
        created_by=created_by,
        organization=organization,
        concurrency_key=options.concurrency_key,
        idempotency_key=idempotency_key,
        parent=parent,
        max_attempts=attempts,
        request_id=request_id,
        last_enqueued_at=now,  # its message goes out at the commit
    )
    queued = JobEvent(
        job_id=job.pk,
        seq=1,  # a new job has no other event yet
        kind="job.queued",
        data={"job_type": job_type, "priority": priority},
        created_at=now,
    )
    try:
        _save_new(job, queued)
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            first = Job.objects.get(created_by=created_by, idempotency_key=idempotency_key)
            return _repeated(first, job_type, organization), False
        raise
    publish(queued)
    prompt_on_commit(str(job.pk), priority)
    metrics.inc("agent_jobs_total", job_type=job_type, status=JobStatus.QUEUED)
    logger.info("job created", extra={"job_id": str(job.pk), "job_type": job_type})
    return job, True


def _repeated(first: Job, job_type: str, organization: Organization | None) -> Job:
    """The first job of a repeated key, if this is the request that made it."""
    # Keys of jobs without a creator (the command line's, say) are one set for every
    # organization: another's job is neither answered nor described (its type included).
    if organization is not None and first.organization_id != organization.pk:
        raise JobConflict("this idempotency key was used for a job of another organization")
    if first.job_type != job_type:
        raise JobConflict(
            f"this idempotency key was used for a {first.job_type} job; "
            f"use another key for a {job_type} job"
        )
    return first


def _job_only(get_or_create: Callable[P, tuple[Job, bool]]) -> Callable[P, Job]:
    """`get_or_create` answering the job alone (its parameters, typed, are the same)."""

    def job_create(*args: P.args, **kwargs: P.kwargs) -> Job:
        return get_or_create(*args, **kwargs)[0]

    return job_create


# Create a job and enqueue it once the transaction commits: `job_get_or_create`, without
# saying whether the job is new (a repeated idempotency key returns the first one).
job_create = _job_only(job_get_or_create)


def _save_new(job: Job, queued: JobEvent) -> None:
    """The job and its first event, both or neither. On PostgreSQL one statement, so
    outside a transaction one round trip; in one, a savepoint keeps a duplicate key
    from breaking the caller's transaction."""
    if connection.vendor == "postgresql":
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            folded.create_job(job, queued)
        return
    with transaction.atomic():
        job.save(force_insert=True)
        save_events([queued])


def _locked(job: Job) -> Job:
    """The job's row, locked against other changes of its status (a cancel, a retry, a
    decision). NO KEY: a writer of its events checks its foreign key at commit (KEY
    SHARE); it must not wait for us while we wait on the event number it took."""
    return Job.objects.select_for_update(no_key=True).get(pk=job.pk)


@transaction.atomic
def job_cancel(*, job: Job, user: User | None = None) -> Job:
    """Cancel now if the job is not running; a running job stops at its next step."""
    locked = _locked(job)
    if locked.status in TERMINAL_STATUSES:
        raise JobConflict(f"job is already {locked.status}")
    by = user.get_username() if user is not None else None
    if locked.status == JobStatus.RUNNING:
        locked.cancel_requested = True
        locked.save(update_fields=["cancel_requested", "updated_at"])
        append_event(str(locked.pk), "job.cancel_requested", {"by": by})
        return locked
    locked.status = JobStatus.CANCELLED
    locked.cancel_requested = True
    locked.finished_at = timezone.now()
    locked.wait_reason, locked.wake_at = "", None
    locked.save(
        update_fields=[
            "status",
            "cancel_requested",
            "finished_at",
            "wait_reason",
            "wake_at",
            "updated_at",
        ]
    )
    append_event(str(locked.pk), "job.cancelled", {"by": by})
    job_ended(locked, JobStatus.CANCELLED, locked.finished_at)
    return locked


@transaction.atomic
def job_retry(*, job: Job, user: User | None = None) -> Job:
    """Run a failed or cancelled job again. Finished steps stay memoized, so it
    continues from where it stopped."""
    locked = _locked(job)
    if locked.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobConflict(
            f"only failed or cancelled jobs can be retried; this one is {locked.status}"
        )
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
    append_event(
        str(locked.pk), "job.retried", {"by": user.get_username() if user is not None else None}
    )
    job_retried.send(sender=Job, job=locked)
    enqueue_on_commit(str(locked.pk), locked.priority)
    metrics.inc("agent_jobs_total", job_type=locked.job_type, status=JobStatus.QUEUED)
    return locked


def job_cancel_children(sender: Any, job_id: str, status: str, **kwargs: Any) -> None:
    """`job_finished` receiver: a cancelled job's unfinished children are cancelled too
    (a workflow's branches, an agent's `run_job`), so nothing it started runs on."""
    if status != JobStatus.CANCELLED:
        return
    children = Job.objects.filter(parent__pk=job_id).exclude(status__in=TERMINAL_STATUSES)
    for child in children:
        try:
            job_cancel(job=child)
        except JobConflict:  # it ended meanwhile
            continue
