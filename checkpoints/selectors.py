"""Reads of checkpoints that are more than a filter."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from accounts.models import Organization
from accounts.roles import visible_to
from checkpoints.models import Checkpoint, Verdict
from jobs.models import Job


def checkpoints_of(organization: Organization | None) -> QuerySet[Checkpoint]:
    """What a member of `organization` may see, with what lists show (none without one)."""
    if organization is None:
        return Checkpoint.objects.none()
    return (
        Checkpoint.objects.filter(organization=organization)
        .select_related("job")
        .prefetch_related("decisions__user")
    )


def job_checkpoints(job: Job) -> QuerySet[Checkpoint]:
    return job.checkpoints.prefetch_related("decisions__user").order_by("opened_at", "pk")


def pending_count(user: AbstractBaseUser | AnonymousUser) -> int:
    """Checkpoints waiting for a decision that the admin shows `user`."""
    return visible_to(Checkpoint.objects.pending(), user).count()


def current_approvers(checkpoint: Checkpoint) -> set[int]:
    """Who has approved the payload as it stands: an edit restarts the count,
    so every approval counted is for the same content (the editor's included)."""
    approvals = list(
        checkpoint.decisions.filter(verdict=Verdict.APPROVED)
        .order_by("created_at", "pk")
        .values_list("user_id", "payload")
    )
    last_edit = max((i for i, (_, edited) in enumerate(approvals) if edited is not None), default=0)
    return {user_id for user_id, _ in approvals[last_edit:] if user_id is not None}
