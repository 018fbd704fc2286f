from datetime import timedelta

from django.contrib.auth.models import Permission, User
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, Role
from accounts.services import default_organization, token_issue
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus, WebhookDelivery
from jobs.models import Job, JobEvent, JobStatus, JobStep, StepStatus
from jobs.runtime import job_workspace


def make_user(username: str, *, approver: bool = False) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    if approver:
        user.user_permissions.add(Permission.objects.get(codename="decide_checkpoint"))
        user = User.objects.get(pk=user.pk)  # drop the permission cache
    return user


def client_for(username: str, organization: Organization | None, role: Role) -> APIClient:
    """An API client holding a fresh token of a new user with `role` in `organization`."""
    user = make_user(username)
    if organization is not None:
        Membership.objects.create(user=user, organization=organization, role=role)
    _, raw = token_issue(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def make_finished_job(
    *, age: timedelta, parent: Job | None = None, status: str = JobStatus.SUCCEEDED
) -> Job:
    """A job (a child of `parent`, if given) that ended `age` ago."""
    return Job.objects.create(
        organization=default_organization(),
        job_type="test-noop",
        status=status,
        parent=parent,
        finished_at=timezone.now() - age,
    )


def add_history(job: Job, *, decided_by: User | None = None) -> Checkpoint:
    """What a job leaves behind: steps, events, an approved checkpoint with its decision,
    a webhook delivery, and a file in its workspace. Returns the checkpoint."""
    for position in range(2):
        JobStep.objects.create(
            job=job, key=f"step-{position}", position=position, status=StepStatus.SUCCEEDED
        )
    for seq in range(1, 4):
        JobEvent.objects.create(job=job, seq=seq, kind="progress")
    checkpoint = Checkpoint.objects.create(
        job=job,
        organization=job.organization,
        key="review",
        title="Review the plan",
        status=CheckpointStatus.APPROVED,
    )
    CheckpointDecision.objects.create(checkpoint=checkpoint, user=decided_by, verdict="approved")
    WebhookDelivery.objects.create(
        checkpoint=checkpoint, event="checkpoint.decided", url="http://hook.test", attempt=1
    )
    workspace = job_workspace(str(job.pk))
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "out.txt").write_text("done")
    return checkpoint
