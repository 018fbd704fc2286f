"""The audit trail outlives the jobs that retention deletes (jobs/retention.py): a job's
decisions are kept, with what they were about, until COUNTERSIGN_DECISION_RETENTION_DAYS."""

import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from checkpoints.models import Checkpoint, CheckpointDecision


def decisions_detach(*, job_ids: Sequence[uuid.UUID], dry_run: bool) -> int:
    """Before the jobs `job_ids` are deleted: their decisions take what they were about
    (job, job type, organization, checkpoint key and title) from their checkpoint, which
    they then no longer point to. Returns how many (dry: would)."""
    decisions = CheckpointDecision.objects.filter(checkpoint__job_id__in=job_ids)
    if dry_run:
        return decisions.count()
    checkpoint = Checkpoint.objects.filter(pk=OuterRef("checkpoint_id"))

    def of(name: str) -> Subquery:
        return Subquery(checkpoint.values(name)[:1])

    # One statement: every SET reads the row as it was, its checkpoint still linked.
    return decisions.update(
        job_ref=of("job_id"),
        job_type=of("job__job_type"),
        organization=of("organization_id"),
        checkpoint_key=of("key"),
        checkpoint_title=of("title"),
        checkpoint=None,
    )


def decisions_prune(*, limit: int | None, dry_run: bool) -> int:
    """Delete (dry: count) at most `limit` decisions whose job is gone and that are older
    than COUNTERSIGN_DECISION_RETENTION_DAYS (0: kept forever)."""
    days = settings.COUNTERSIGN_DECISION_RETENTION_DAYS
    if days <= 0:
        return 0
    outlived = CheckpointDecision.objects.filter(
        checkpoint__isnull=True, created_at__lt=timezone.now() - timedelta(days=days)
    ).order_by("pk")
    if dry_run:
        return (outlived[:limit] if limit else outlived).count()
    batch = list(outlived.values_list("pk", flat=True)[:limit])
    # A queryset's delete, not the model's (which refuses): only age ends a decision.
    return CheckpointDecision.objects.filter(pk__in=batch).delete()[0]
