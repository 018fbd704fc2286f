"""Checkpoints as a kind of wait in the runtime (`ctx.checkpoint(...)`)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from checkpoints.models import Checkpoint, CheckpointKind, CheckpointStatus, OnTimeout
from checkpoints.selectors import resolution
from checkpoints.tasks import notify_opened
from core import metrics
from core.schemas import schema_problems
from jobs.models import Job, JobStep
from jobs.runtime import JobRejected, NonRetryableError, Pending, Resolved

logger = logging.getLogger(__name__)


class CheckpointRejected(JobRejected):
    """Raised in the handler when a reviewer rejects (or an expiry rejects).

    A handler may catch it; uncaught, the job ends `rejected`.
    """

    def __init__(
        self, reason: str, *, decided_by: list[str], checkpoint_id: int, timed_out: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decided_by = decided_by
        self.checkpoint_id = checkpoint_id
        self.timed_out = timed_out


class CheckpointExpired(NonRetryableError):
    """An expired checkpoint whose on_timeout policy is `fail`."""


class InvalidCheckpoint(NonRetryableError):
    """The handler asked for a checkpoint that cannot exist (bad kind, schema, expiry)."""


@dataclass(frozen=True)
class Decision:
    """What a handler gets back from an approved (or answered) checkpoint."""

    checkpoint_id: int
    status: str
    payload: dict[str, Any]
    data: Any = None
    reason: str = ""
    decided_by: list[str] = field(default_factory=list)
    timed_out: bool = False
    edited: bool = False


@dataclass
class CheckpointWaiter:
    key: str
    title: str
    kind: str = CheckpointKind.APPROVAL
    description: str = ""
    payload: dict[str, Any] | None = None
    payload_schema: dict[str, Any] | None = None
    payload_validator: str = ""
    input_schema: dict[str, Any] | None = None
    expires_in: float | None = None
    on_timeout: str = OnTimeout.REJECT
    required_approvals: int = 1
    reason: str = "checkpoint"

    def __post_init__(self) -> None:
        if self.kind not in CheckpointKind.values:
            raise InvalidCheckpoint(f"unknown checkpoint kind {self.kind!r}")
        if self.on_timeout not in OnTimeout.values:
            raise InvalidCheckpoint(f"unknown on_timeout {self.on_timeout!r}")
        if self.required_approvals < 1:
            raise InvalidCheckpoint("required_approvals must be at least 1")
        if self.kind == CheckpointKind.INPUT and not self.input_schema:
            raise InvalidCheckpoint("an input checkpoint needs an input_schema")
        if self.expires_in is not None and self.expires_in <= 0:
            raise InvalidCheckpoint("expires_in must be positive")
        for schema in (self.input_schema, self.payload_schema):
            if schema is not None and (problems := schema_problems(schema)):
                raise InvalidCheckpoint(f"invalid JSON schema: {problems[0]}")

    def poll(
        self,
        *,
        job: Job,
        key: str,
        step: JobStep | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Pending | Resolved:
        now = timezone.now()
        info = self.kind == CheckpointKind.INFO
        checkpoint, created = Checkpoint.objects.get_or_create(
            job=job,
            key=key,
            defaults=dict(
                organization_id=job.organization_id,
                kind=self.kind,
                title=self.title[:300],
                description=self.description,
                payload=self.payload or {},
                payload_schema=self.payload_schema,
                payload_validator=self.payload_validator,
                input_schema=self.input_schema,
                required_approvals=self.required_approvals,
                on_timeout=self.on_timeout,
                expires_at=now + timedelta(seconds=self.expires_in) if self.expires_in else None,
                status=CheckpointStatus.APPROVED if info else CheckpointStatus.PENDING,
                decided_at=now if info else None,
            ),
        )
        if created:
            metrics.inc("agent_checkpoints_total", kind=self.kind, status=checkpoint.status)
            emit(
                "checkpoint.opened",
                {
                    "checkpoint_id": checkpoint.pk,
                    "key": key,
                    "kind": self.kind,
                    "title": checkpoint.title,
                },
            )
            logger.info("checkpoint opened (%s)", self.kind, extra={"checkpoint_id": checkpoint.pk})
            if checkpoint.status == CheckpointStatus.PENDING:
                _notify_on_commit(checkpoint.pk)
        elif checkpoint.status == CheckpointStatus.CANCELLED:
            # The job was cancelled while waiting and then retried: ask again. The new
            # opening comes after every earlier decision, whatever clock dated them, so
            # that none of them counts in it (selectors.opening_decisions).
            last = checkpoint.decisions.aggregate(last=Max("created_at"))["last"]
            opened = max(now, last + timedelta(microseconds=1)) if last else now
            checkpoint.status, checkpoint.opened_at, checkpoint.decided_at = (
                CheckpointStatus.PENDING,
                opened,
                None,
            )
            if self.expires_in:
                checkpoint.expires_at = now + timedelta(seconds=self.expires_in)
            checkpoint.save(update_fields=["status", "opened_at", "decided_at", "expires_at"])
            emit("checkpoint.reopened", {"checkpoint_id": checkpoint.pk})
        if checkpoint.status == CheckpointStatus.PENDING:
            return Pending()
        return Resolved(resolution(checkpoint))

    def load(self, data: Any) -> Decision:
        status = data["status"]
        timed_out = status == CheckpointStatus.EXPIRED
        outcome = data.get("on_timeout") if timed_out else status
        if outcome in (CheckpointStatus.REJECTED, OnTimeout.REJECT):
            raise CheckpointRejected(
                data.get("reason") or ("checkpoint expired" if timed_out else "rejected"),
                decided_by=data.get("decided_by", []),
                checkpoint_id=data["checkpoint_id"],
                timed_out=timed_out,
            )
        if outcome == OnTimeout.FAIL:
            raise CheckpointExpired(f"checkpoint {data['key']!r} expired without a decision")
        return Decision(
            checkpoint_id=data["checkpoint_id"],
            status=status,
            payload=data["payload"],
            data=data.get("data"),
            reason=data.get("reason", ""),
            decided_by=data.get("decided_by", []),
            timed_out=timed_out,
            edited=data.get("edited", False),
        )


def _notify_on_commit(checkpoint_id: int) -> None:
    """Tell reviewers once the checkpoint (and its job's wait) are committed."""

    def send() -> None:
        try:
            notify_opened.delay(checkpoint_id)
        except Exception:  # the broker is down: the checkpoint still waits, visibly
            logger.exception("could not queue the notification for checkpoint %s", checkpoint_id)

    transaction.on_commit(send)
