from typing import Any

from django.db.models import Count
from django.utils import timezone

from checkpoints.models import Checkpoint, CheckpointStatus
from core import metrics


def close_pending_checkpoints(sender: Any, job_id: str, status: str, **kwargs: Any) -> None:
    """A job that ended (cancelled, failed) leaves no checkpoint waiting for a reviewer."""
    if status == "succeeded":  # it went past all its waits: nothing can be pending
        return
    pending = Checkpoint.objects.filter(job_id=job_id, status=CheckpointStatus.PENDING)
    kinds = list(pending.values("kind").annotate(n=Count("pk")))
    if pending.update(status=CheckpointStatus.CANCELLED, decided_at=timezone.now()):
        for row in kinds:
            metrics.inc(
                "agent_checkpoints_total",
                row["n"],
                kind=row["kind"],
                status=CheckpointStatus.CANCELLED,
            )
