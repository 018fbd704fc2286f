"""Telling reviewers that a checkpoint waits for them: email and a signed webhook.

Neither carries the checkpoint's payload: only what it is, where it waits and
the link to review it, so nothing a payload holds (secrets, personal data)
leaves through a notification.
"""

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import send_mail

from accounts.models import Membership, Role
from checkpoints.models import Checkpoint, WebhookDelivery

logger = logging.getLogger(__name__)


class WebhookFailed(Exception):
    """A delivery that may succeed later (network error, 5xx, 429)."""


def review_url(checkpoint: Checkpoint) -> str:
    return f"{settings.COUNTERSIGN_PUBLIC_URL}/admin/checkpoints/checkpoint/{checkpoint.pk}/change/"


def summary(checkpoint: Checkpoint, event: str) -> dict[str, Any]:
    job = checkpoint.job
    return {
        "event": event,
        "organization": job.organization.slug,
        "checkpoint": {
            "id": checkpoint.pk,
            "key": checkpoint.key,
            "kind": checkpoint.kind,
            "title": checkpoint.title,
            "status": checkpoint.status,
            "opened_at": checkpoint.opened_at.isoformat(),
            "expires_at": checkpoint.expires_at.isoformat() if checkpoint.expires_at else None,
        },
        "job": {"id": str(job.pk), "job_type": job.job_type},
        "review_url": review_url(checkpoint),
    }


def email_approvers(checkpoint: Checkpoint) -> int:
    organization = checkpoint.job.organization
    recipients = sorted(
        Membership.objects.filter(
            organization=organization, role__in=[Role.APPROVER, Role.ADMIN], user__is_active=True
        )
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not recipients:
        return 0
    body = (
        f"A checkpoint waits for a decision.\n\n{checkpoint.title}\n"
        f"Job: {checkpoint.job.job_type} {checkpoint.job_id}\n\n"
        f"Review it: {review_url(checkpoint)}\n"
    )
    return send_mail(
        f"[Countersign] {checkpoint.title}", body, settings.DEFAULT_FROM_EMAIL, recipients
    )


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_webhook(checkpoint: Checkpoint, event: str, attempt: int) -> WebhookDelivery:
    """POST the summary once and record the attempt; WebhookFailed if worth retrying."""
    organization = checkpoint.job.organization
    body = json.dumps(summary(checkpoint, event), separators=(",", ":")).encode()
    request = urllib.request.Request(
        organization.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Countersign-Webhook/1",
            "X-Countersign-Event": event,
            "X-Countersign-Signature": sign(organization.webhook_secret, body),
        },
    )
    delivery = WebhookDelivery(
        checkpoint=checkpoint, event=event, attempt=attempt, url=organization.webhook_url
    )
    try:
        with urllib.request.urlopen(  # noqa: S310 - an operator-configured https/http URL
            request, timeout=settings.COUNTERSIGN_WEBHOOK_TIMEOUT_SECONDS
        ) as response:
            delivery.status_code = response.status
    except urllib.error.HTTPError as exc:
        delivery.status_code = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        delivery.error = str(exc)[:500]
    delivery.delivered = delivery.status_code is not None and 200 <= delivery.status_code < 300
    delivery.save()
    retryable = (
        delivery.error
        or delivery.status_code in (408, 429)
        or (delivery.status_code is not None and delivery.status_code >= 500)
    )
    if not delivery.delivered and retryable:
        raise WebhookFailed(delivery.error or f"HTTP {delivery.status_code}")
    return delivery
