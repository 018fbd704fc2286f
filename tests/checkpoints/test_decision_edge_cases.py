"""Decisions at the edges: racing a cancel, after expiry, edits short of quorum."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import JobConflict, job_cancel, job_create
from tests.factories import make_user
from tests.utils import wait_status


def paused(job_type: str, **input: object) -> tuple[Job, Checkpoint]:
    job = job_create(job_type=job_type, input=dict(input), created_by=make_user("creator"))
    assert run_job(str(job.pk)) == JobStatus.WAITING
    return job, Checkpoint.objects.get(job=job, status=CheckpointStatus.PENDING)


@pytest.mark.django_db
def test_a_checkpoint_past_its_expiry_cannot_be_approved_late():
    job, checkpoint = paused("test-approval", expires_in=3600)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    with pytest.raises(services.CheckpointConflict, match="expired"):
        services.checkpoint_approve(checkpoint=checkpoint, user=make_user("alice", approver=True))


@pytest.mark.django_db
def test_an_edit_short_of_the_quorum_does_not_survive_expiry():
    job, checkpoint = paused(
        "test-approval",
        required_approvals=2,
        on_timeout="approve",
        expires_in=3600,
        payload={"n": 1},
    )
    services.checkpoint_approve(
        checkpoint=checkpoint, user=make_user("alice", approver=True), payload={"n": 666}
    )
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert services.checkpoints_expire_due() == 1
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=job.pk).result["payload"] == {"n": 1}


@pytest.mark.django_db
def test_a_truncated_result_cannot_be_edited(settings, tmp_path):
    settings.COUNTERSIGN_WORKSPACE_ROOT = tmp_path
    records = [{"n": i} for i in range(600)]
    job, plan = paused("data-processing", records=records, operations=[])
    alice = make_user("alice", approver=True)
    services.checkpoint_approve(checkpoint=plan, user=alice)
    assert run_job(str(job.pk)) == JobStatus.WAITING
    result = Checkpoint.objects.get(job=job, key="approve-result")
    assert result.payload["truncated"] is True and len(result.payload["rows"]) == 100

    with pytest.raises(services.CheckpointValidationError) as refused:
        services.checkpoint_approve(
            checkpoint=result, user=alice, payload={"rows": [{"n": 1}], "truncated": False}
        )
    assert "600 rows" in refused.value.fields["rows"][0]


def test_a_decision_racing_a_cancel_never_deadlocks(worker):
    job = job_create(job_type="test-approval", created_by=make_user("creator"))
    wait_status(job.pk, JobStatus.WAITING)
    checkpoint = Checkpoint.objects.get(job=job)
    alice = make_user("alice", approver=True)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(action) -> None:
        try:
            barrier.wait()
            action()
        except (services.CheckpointConflict, JobConflict):
            pass  # losing the race is fine; a deadlock error is not
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(lambda: job_cancel(job=job),)),
        threading.Thread(
            target=run,
            args=(lambda: services.checkpoint_approve(checkpoint=checkpoint, user=alice),),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    wait_status(job.pk, JobStatus.CANCELLED, JobStatus.SUCCEEDED)
