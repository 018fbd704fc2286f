import logging

from celery import Task, shared_task
from django.conf import settings

from checkpoints import notifications, services
from checkpoints.models import Checkpoint
from core import logs

logger = logging.getLogger(__name__)


@shared_task(name="checkpoints.expire_due", ignore_result=True)
def expire_due() -> int:
    return services.checkpoints_expire_due()


@shared_task(name="checkpoints.notify_opened", ignore_result=True)
def notify_opened(checkpoint_id: int) -> None:
    """Email the organization's approvers; start the webhook delivery."""
    checkpoint = (
        Checkpoint.objects.select_related("job__organization").filter(pk=checkpoint_id).first()
    )
    if checkpoint is None:
        return
    with logs.bind(
        checkpoint_id=checkpoint_id,
        job_id=str(checkpoint.job_id),
        request_id=checkpoint.job.request_id,
    ):
        notifications.email_approvers(checkpoint)
        if checkpoint.job.organization.webhook_url:
            deliver_webhook.delay(checkpoint_id, "checkpoint.opened")


@shared_task(name="checkpoints.deliver_webhook", bind=True, ignore_result=True, max_retries=None)
def deliver_webhook(self: Task, checkpoint_id: int, event: str) -> None:
    checkpoint = (
        Checkpoint.objects.select_related("job__organization").filter(pk=checkpoint_id).first()
    )
    if checkpoint is None or not checkpoint.job.organization.webhook_url:
        return
    attempt = self.request.retries + 1
    try:
        with logs.bind(
            checkpoint_id=checkpoint_id,
            job_id=str(checkpoint.job_id),
            request_id=checkpoint.job.request_id,
        ):
            notifications.deliver_webhook(checkpoint, event, attempt)
    except notifications.WebhookFailed as exc:
        # Only transient failures (network, 5xx, 429) come here; retry with backoff.
        if attempt >= settings.COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS:
            logger.warning(
                "webhook for checkpoint %s gave up after %s attempts: %s",
                checkpoint_id,
                attempt,
                exc,
                extra={"checkpoint_id": checkpoint_id, "job_id": str(checkpoint.job_id)},
            )
            return
        raise self.retry(
            countdown=settings.COUNTERSIGN_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt - 1)
        ) from exc
