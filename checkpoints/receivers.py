from typing import Any

from django.utils import timezone

from checkpoints.models import Checkpoint, CheckpointStatus


def close_pending_checkpoints(sender: Any, job_id: str, status: str, **kwargs: Any) -> None:
    """A job that ended (cancelled, failed) leaves no checkpoint waiting for a reviewer."""
    if status == "succeeded":  # it went past all its waits: nothing can be pending
        return
    Checkpoint.objects.filter(job_id=job_id, status=CheckpointStatus.PENDING).update(
        status=CheckpointStatus.CANCELLED, decided_at=timezone.now())
