"""Workflows: stored, versioned definitions; their runs (each a job); events and the
waits and triggers they meet; the conversations of message-triggered workflows."""

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from jobs.models import Job


class Workflow(models.Model):
    """A workflow of an organization. Its definition lives in versions; a run pins the
    version it started on, so an edit never changes a run in flight."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="workflows"
    )
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    active = models.BooleanField(
        default=True, help_text="Inactive workflows start no runs (runs in flight finish)."
    )
    current_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="workflows",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "slug"], name="workflow_slug_unique_per_organization"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class WorkflowVersion(models.Model):
    """One saved definition. Immutable: saving a definition makes a new version."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the canonical definition.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.number}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("workflow versions are immutable; save a new one")
        super().save(*args, **kwargs)


class Trigger(models.TextChoices):
    API = "api"  # the API, the command line, the admin
    EVENT = "event"
    SCHEDULE = "schedule"
    MESSAGE = "message"
    WORKFLOW = "workflow"  # a `workflow` node of another run
    AGENT = "agent"  # an agent called it as a tool


class WorkflowRun(models.Model):
    """A run of a workflow: its job (which holds its state) and what started it."""

    job = models.OneToOneField(
        Job, on_delete=models.CASCADE, primary_key=True, related_name="workflow_run"
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="workflow_runs"
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.API)
    event = models.ForeignKey(
        "Event", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    session_id = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="wfrun_org_created_idx"),
            models.Index(fields=["workflow", "-created_at"], name="wfrun_workflow_created_idx"),
            # a conversation's turns (message-triggered runs), for its history
            models.Index(
                fields=["workflow", "session_id", "-created_at"], name="wfrun_session_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} run {self.job_id}"


class TriggerRule(models.Model):
    """A trigger of a workflow's current version (event or schedule), kept in step with
    its definition so events and beat find them with an index."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    kind = models.CharField(max_length=16, choices=Trigger.choices)
    event_name = models.CharField(max_length=200, blank=True, default="")
    filter = models.TextField(blank=True, default="", help_text="A CEL condition on `event`.")
    cron = models.CharField(max_length=100, blank=True, default="")
    timezone = models.CharField(max_length=64, blank=True, default="")
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["workflow", "pk"]
        indexes = [
            models.Index(fields=["kind", "event_name"], name="trigger_event_idx"),
            models.Index(fields=["kind", "next_fire_at"], name="trigger_schedule_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_name or self.cron}"


class Event(models.Model):
    """Something that happened, sent by a program, a person or a workflow: it wakes the
    runs waiting for it and starts the workflows triggered by it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="events"
    )
    name = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    source = models.CharField(max_length=200, blank=True, default="")
    # Who sent it (directly, or through a run they started): the runs it triggers are
    # theirs, so the four-eyes rule holds for them too.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # 0 when sent from outside; an event emitted by a run is one deeper than the event
    # that started the run. Deep chains start no workflows (a trigger loop ends).
    depth = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="event_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "name", "received_at"], name="event_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.received_at:%Y-%m-%d %H:%M:%S})"

    def payload(self) -> dict[str, Any]:
        """The event as expressions and nodes see it (`event`)."""
        return {
            "id": str(self.pk),
            "name": self.name,
            "data": self.data,
            "source": self.source,
            "depth": self.depth,
            "received_at": self.received_at.isoformat(),
        }


class EventWait(models.Model):
    """A run waiting at a `wait_for_event` node: registered in the transaction that
    suspends it, matched by an event sent later or already received (see events.py)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    # The run (a branch's root), whose events a wait may not match twice.
    run = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=200)
    match = models.TextField(blank=True, default="")
    context = models.JSONField(default=dict, blank=True)  # what `match` may read besides `event`
    since = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="waits"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "key"], name="eventwait_unique_job_key"),
        ]
        indexes = [
            models.Index(
                fields=["organization", "name"],
                condition=Q(event__isnull=True),
                name="eventwait_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} for {self.job_id}"
