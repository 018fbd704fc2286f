"""Checkpoints: where a job stops until a person countersigns."""

from django.conf import settings
from django.db import models
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from jobs.models import Job


class CheckpointKind(models.TextChoices):
    APPROVAL = "approval"  # blocks until approved or rejected
    INPUT = "input"  # blocks until a person supplies data matching input_schema
    INFO = "info"  # recorded, never blocks


class CheckpointStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class OnTimeout(models.TextChoices):
    REJECT = "reject"
    APPROVE = "approve"
    FAIL = "fail"


class CheckpointQuerySet(models.QuerySet["Checkpoint"]):
    def pending(self) -> "CheckpointQuerySet":
        return self.filter(status=CheckpointStatus.PENDING)

    def pending_first(self) -> "CheckpointQuerySet":
        """What waits for a person first, oldest first: the order of every review list."""
        rank = Case(
            When(status=CheckpointStatus.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return self.annotate(pending_rank=rank).order_by("pending_rank", "opened_at", "pk")


class Checkpoint(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="checkpoints")
    # The job's organization, copied so that a reviewer's queue ("my organization's
    # pending checkpoints, oldest first") is one index range, with no join.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="checkpoints"
    )
    key = models.CharField(max_length=200)
    kind = models.CharField(
        max_length=16, choices=CheckpointKind.choices, default=CheckpointKind.APPROVAL
    )
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    # JSON schema an edited payload must match (approval) / the input must match (input).
    payload_schema = models.JSONField(null=True, blank=True)
    input_schema = models.JSONField(null=True, blank=True)
    # Dotted path of a function(checkpoint, payload) -> {field: [errors]} that
    # checks an edited payload beyond its schema (set by handler code, never by users).
    payload_validator = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(
        max_length=16,
        choices=CheckpointStatus.choices,
        default=CheckpointStatus.PENDING,
        db_index=True,
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    expires_at = models.DateTimeField(null=True, blank=True)
    on_timeout = models.CharField(
        max_length=16, choices=OnTimeout.choices, default=OnTimeout.REJECT
    )
    opened_at = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = CheckpointQuerySet.as_manager()

    class Meta:
        ordering = ["opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "key"], name="checkpoint_unique_job_key"),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="checkpoint_status_expiry_idx"),
            models.Index(
                fields=["organization", "status", "opened_at"], name="checkpoint_org_queue_idx"
            ),
        ]
        permissions = [("decide_checkpoint", "Can approve, reject or answer checkpoints")]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == CheckpointStatus.PENDING


class WebhookDelivery(models.Model):
    """One attempt to tell an organization's webhook about a checkpoint."""

    checkpoint = models.ForeignKey(
        Checkpoint, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    event = models.CharField(max_length=64)
    url = models.URLField()
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    delivered = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["checkpoint", "created_at"]

    def __str__(self) -> str:
        return f"{self.event} attempt {self.attempt}: {self.status_code or self.error}"


class Verdict(models.TextChoices):
    APPROVED = "approved"
    REJECTED = "rejected"
    INPUT = "input"
    EXPIRED = "expired"


class CheckpointDecision(models.Model):
    """One person's (or the clock's) decision. Immutable: the audit trail.

    It outlives its job: when retention deletes the job, the decision is first given
    what it was about (the fields below `created_at`) and its checkpoint link becomes
    null (checkpoints/retention.py); it goes at COUNTERSIGN_DECISION_RETENTION_DAYS.
    """

    checkpoint = models.ForeignKey(
        Checkpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="checkpoint_decisions",
    )
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    reason = models.TextField(blank=True, default="")
    # The edited payload (approval) or the supplied data (input); null if none.
    payload = models.JSONField(null=True, blank=True)
    # Not auto_now_add: a decision that settles its checkpoint is stamped with the same
    # moment as the checkpoint's decided_at and the job's events (`_settle`).
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Written when its job is deleted; until then the checkpoint says it. Database
    # defaults, so the previous release's code can still insert rows during a rollout.
    job_ref = models.UUIDField(null=True, blank=True)
    job_type = models.CharField(max_length=100, blank=True, default="", db_default="")
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    checkpoint_key = models.CharField(max_length=200, blank=True, default="", db_default="")
    checkpoint_title = models.CharField(max_length=300, blank=True, default="", db_default="")

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # the retention pass's look for outlived decisions past their age
            models.Index(
                fields=["created_at"],
                condition=models.Q(checkpoint__isnull=True),
                name="decision_detached_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.user or 'timeout'}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("checkpoint decisions are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("checkpoint decisions are immutable")
