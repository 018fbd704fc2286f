"""Cancel, retries and determinism, with a real worker."""

import time
from pathlib import Path

import pytest

from accounts.services import default_organization
from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus
from jobs.runtime.queue import send_run_message
from jobs.services import JobConflict, job_cancel, job_create, job_retry
from tests.conftest import read_lines
from tests.factories import make_user
from tests.utils import wait_for, wait_status


def test_cancel_a_queued_job_at_once(worker):
    job = Job.objects.create(
        organization=default_organization(), job_type="simple-task", status=JobStatus.QUEUED
    )
    job_cancel(job=job)
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED

    send_run_message(str(job.pk), job.priority)  # a late message changes nothing
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and not job.steps.exists()
    with pytest.raises(JobConflict):
        job_cancel(job=job)


def test_cancel_a_waiting_job_closes_its_checkpoint(worker):
    job = job_create(job_type="test-approval")
    wait_status(job.pk, JobStatus.WAITING)

    job_cancel(job=job)

    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.status == CheckpointStatus.CANCELLED
    with pytest.raises(services.CheckpointConflict):
        services.checkpoint_approve(checkpoint=checkpoint, user=make_user("alice", approver=True))


def test_cancel_a_running_job_stops_at_the_next_step(worker, side_effects: Path):
    job = job_create(job_type="test-steady", input={"log": str(side_effects), "steps": 400})
    wait_for(lambda: len(read_lines(side_effects)) >= 3, message="a few steps to run")

    job_cancel(job=job)

    wait_status(job.pk, JobStatus.CANCELLED, timeout=20)
    ran = len(read_lines(side_effects))
    assert 3 <= ran < 400
    assert Job.objects.get(pk=job.pk).steps.count() in (ran, ran - 1)


def test_retry_a_cancelled_waiting_job_asks_again(worker):
    job = job_create(job_type="test-approval")
    wait_status(job.pk, JobStatus.WAITING)
    job_cancel(job=job)

    job_retry(job=job)

    wait_status(job.pk, JobStatus.WAITING)
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.status == CheckpointStatus.PENDING
    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("alice", approver=True))
    wait_status(job.pk, JobStatus.SUCCEEDED)


def attempt_times(log: Path) -> list[float]:
    return [float(line.split(":")[1]) for line in read_lines(log)]


def test_step_retries_back_off_and_do_not_repeat_finished_steps(worker, side_effects: Path):
    job = job_create(job_type="test-flaky-step", input={"log": str(side_effects), "failures": 2})

    wait_status(job.pk, JobStatus.SUCCEEDED)
    job.refresh_from_db()
    assert job.result["tries"] == 3 and job.attempts == 1
    assert read_lines(Path(str(side_effects) + ".first")) == ["ran"]
    times = attempt_times(side_effects)
    # backoff 0.3 s then 0.6 s (no jitter in this policy)
    assert times[1] - times[0] >= 0.3 and times[2] - times[1] >= 0.6
    assert job.steps.get(key="flaky").attempt == 3


def test_step_retries_exhausted_fail_the_job(worker, side_effects: Path):
    job = job_create(
        job_type="test-flaky-step",
        input={"log": str(side_effects), "failures": 9, "max_attempts": 2},
    )

    wait_status(job.pk, JobStatus.FAILED)
    job.refresh_from_db()
    assert len(read_lines(side_effects)) == 2
    assert "after 2 attempt(s)" in job.error_message and "ConnectionError" in job.error_message


def test_job_retries_with_backoff_then_succeed(worker, side_effects: Path):
    job = job_create(job_type="test-flaky-job", input={"log": str(side_effects), "failures": 2})

    wait_status(job.pk, JobStatus.SUCCEEDED)
    job.refresh_from_db()
    assert job.attempts == 3 and job.result == "ok"
    assert read_lines(Path(str(side_effects) + ".setup")) == ["ran"]
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds.count("job.retrying") == 2


def test_job_retries_exhausted_fail_with_the_last_error(worker, side_effects: Path):
    job = job_create(job_type="test-flaky-job", input={"log": str(side_effects), "failures": 9})

    wait_status(job.pk, JobStatus.FAILED)
    job.refresh_from_db()
    assert job.attempts == 3 and len(read_lines(side_effects)) == 3
    assert job.error_type == "RuntimeError" and job.error_message == "failure 3"
    assert "Traceback" in job.error_traceback


@pytest.mark.parametrize("flag", ["fatal", "keyerror"])
def test_non_retryable_errors_fail_at_once(worker, side_effects: Path, flag):
    job = job_create(
        job_type="test-flaky-job", input={"log": str(side_effects), "failures": 0, flag: True}
    )

    wait_status(job.pk, JobStatus.FAILED)
    assert Job.objects.get(pk=job.pk).attempts == 1
    assert len(read_lines(side_effects)) == 1


def test_changed_step_order_is_detected_on_replay(worker, tmp_path: Path):
    order = tmp_path / "order"
    order.write_text("a b")
    job = job_create(
        job_type="test-order", input={"order_file": str(order)}, created_by=make_user("creator")
    )
    wait_status(job.pk, JobStatus.WAITING)

    order.write_text("b a")  # a deploy that reorders the handler's steps
    services.checkpoint_approve(
        checkpoint=Checkpoint.objects.get(job=job), user=make_user("alice", approver=True)
    )

    wait_status(job.pk, JobStatus.FAILED)
    job.refresh_from_db()
    assert job.error_type == "NonDeterministicReplay"
    assert "'a'" in job.error_message and "'b'" in job.error_message

    order.write_text("a b")  # the fix is deployed; retrying continues where it stopped
    job_retry(job=job)
    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=job.pk).result == ["a", "b"]


def test_resume_is_event_driven(worker):
    # Not a timing assertion: with the reconciler's grace at 1.5 s, a resume
    # that waited for it could not show job.resumed before the grace elapsed.
    job = job_create(job_type="test-approval", created_by=make_user("creator"))
    wait_status(job.pk, JobStatus.WAITING)
    checkpoint = Checkpoint.objects.get(job=job)
    decided = time.monotonic()
    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("alice", approver=True))
    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert time.monotonic() - decided < 1.5
