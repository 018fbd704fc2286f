"""Jobs and their durable history: memoized steps and progress events."""

import uuid
from datetime import datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED}
)
# The wait reason of a job parked at its concurrency key's limit (jobs.runtime.concurrency).
PARKED = "concurrency"
# What the release before the jobs app called it: jobs its workers park during a rolling
# upgrade are parked all the same. Drop with the agents_job.agent_id column.
LEGACY_PARKED = "agent concurrency"


def runnable(now: datetime, *, due_by: datetime | None = None) -> Q:
    """The rule of which jobs a run may take: queued; a timer or retry due by `due_by`
    (default now); a run whose worker died (its lease ran out)."""
    return (
        Q(status=JobStatus.QUEUED)
        | Q(status__in=[JobStatus.RETRYING, JobStatus.WAITING], wake_at__lte=due_by or now)
        | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    )


class JobQuerySet(models.QuerySet["Job"]):
    """The rules about job rows, each written once."""

    def terminal(self) -> "JobQuerySet":
        return self.filter(status__in=TERMINAL_STATUSES)

    def claimable(self, now: datetime) -> "JobQuerySet":
        """Runnable, and no live lease: what the claim (jobs.runtime.leases) may take."""
        return self.filter(
            runnable(now), Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
        )

    def stranded(self, *, now: datetime, grace: datetime, queued_grace: datetime) -> "JobQuerySet":
        """Runnable jobs that nothing runs and that no message was sent for within the
        grace: a lost message, a countdown that died with a worker, a dead run. A
        queued job has a grace of its own (a backlog on the broker makes it longer)."""

        def unsent(since: datetime) -> Q:
            return Q(last_enqueued_at__isnull=True) | Q(last_enqueued_at__lt=since)

        return self.filter(
            Q(status=JobStatus.QUEUED) & unsent(queued_grace)
            | runnable(now, due_by=grace) & ~Q(status=JobStatus.QUEUED) & unsent(grace)
        )

    def holding_slot(self, key: str, now: datetime) -> "JobQuerySet":
        """Runs of the key's jobs going on now (a live lease)."""
        return self.filter(concurrency_key=key, status=JobStatus.RUNNING, lease_expires_at__gt=now)

    def started_unfinished(self, key: str) -> "JobQuerySet":
        """Jobs of the key between their first start and their end, waits included, and
        queued again to go on after one (a parked job has not started its work)."""
        return self.filter(
            concurrency_key=key,
            started_at__isnull=False,
            status__in=[JobStatus.WAITING, JobStatus.RETRYING, JobStatus.QUEUED],
        ).exclude(wait_reason__in=[PARKED, LEGACY_PARKED])

    def parked(self, key: str) -> "JobQuerySet":
        """Jobs of the key waiting for a slot, most urgent and oldest first."""
        return self.filter(
            concurrency_key=key, status=JobStatus.WAITING, wait_reason__in=[PARKED, LEGACY_PARKED]
        ).order_by("-priority", "created_at")


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job_type = models.CharField(max_length=100, db_index=True)
    input = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    # What a waiting job waits for ("checkpoint", "timer", ...) and, for
    # timers and retries, when it becomes runnable again.
    wait_reason = models.CharField(max_length=32, blank=True, default="")
    wake_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(0), MaxValueValidator(9)],
        help_text="0 (lowest) to 9 (most urgent).",
    )
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    # The X-Request-ID of the request that created the job (a child job: its parent's),
    # so the request's log lines and the job's can be found together.
    request_id = models.CharField(max_length=100, blank=True, default="")
    # The tenant. Jobs started with none named join COUNTERSIGN_DEFAULT_ORGANIZATION.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="jobs"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    # Jobs sharing a key run at most N at once, N being what the app owning the key's
    # prefix says ("agent:12": that agent's max_concurrency). Empty: no limit.
    concurrency_key = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    # USD, exact to 1e-10: a cheap call costs fractions of a millionth. Null: unknown.
    cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        # Created by the agents app before the runtime had a package of its own; the
        # table kept its name (see jobs/migrations/0001_initial.py).
        db_table = "agents_job"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="job_idempotency_key_unique_per_creator",
            ),
            # NULLs are distinct in the constraint above: jobs with no creator
            # (scripts, schedules) need their own.
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(created_by__isnull=True) & ~Q(idempotency_key=""),
                name="job_idempotency_key_unique_without_creator",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=0) & Q(priority__lte=9), name="job_priority_0_9"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "wake_at"], name="job_status_wake_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="job_status_lease_idx"),
            models.Index(fields=["organization", "-created_at"], name="job_org_created_idx"),
            models.Index(
                fields=["concurrency_key", "status"],
                name="job_concurrency_idx",
                condition=~Q(concurrency_key=""),
            ),
            # retention: finished top-level jobs, oldest first (jobs/retention.py)
            models.Index(
                fields=["finished_at", "id"],
                name="job_root_finished_idx",
                condition=Q(parent__isnull=True, finished_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class StepKind(models.TextChoices):
    STEP = "step"
    WAIT = "wait"


class StepStatus(models.TextChoices):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WAITING = "waiting"


class JobStep(models.Model):
    """One memoized unit of a job: a step's result, or the state of a wait."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=200)
    # Order in which the handler reached this step; replays must match it.
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=StepKind.choices, default=StepKind.STEP)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Created by the agents app before the runtime had a package of its own; the
        # table kept its name (see jobs/migrations/0001_initial.py).
        db_table = "agents_jobstep"
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "key"], name="jobstep_unique_job_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class JobEvent(models.Model):
    """An append-only progress record of a job, numbered per job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    # When it happened (set when emitted), not when a run's batch of events was written.
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        # Created by the agents app before the runtime had a package of its own; the
        # table kept its name (see jobs/migrations/0001_initial.py).
        db_table = "agents_jobevent"
        ordering = ["job", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="jobevent_unique_job_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"
