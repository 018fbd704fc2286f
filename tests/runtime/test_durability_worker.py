"""Crash safety, leases, the reconciler and durable timers, with a real worker."""

import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.services import default_organization
from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus, JobStep
from jobs.runtime import engine
from jobs.runtime.queue import send_run_message
from jobs.services import job_cancel, job_create
from tests.conftest import read_lines
from tests.factories import make_user
from tests.utils import wait_for, wait_status


def running_pid(job_id: object) -> int:
    owner = wait_for(
        lambda: (
            Job.objects.filter(pk=job_id, status=JobStatus.RUNNING)
            .values_list("lease_owner", flat=True)
            .first()
        ),
        message="the job to be running",
    )
    return int(owner.split(":")[1])


def test_worker_killed_mid_step_finishes_with_completed_steps_run_once(
    worker, side_effects: Path, tmp_path: Path
):
    # given a job blocked inside its third step
    release = tmp_path / "release"
    job = job_create(
        job_type="test-counting", input={"log": str(side_effects), "release": str(release)}
    )
    wait_for(lambda: "slow:start" in read_lines(side_effects), message="slow step to start")
    pid = running_pid(job.pk)

    # when the pool process running it is killed outright (as by the OOM killer)
    os.kill(pid, signal.SIGKILL)
    release.touch()

    # then the job is recovered and finishes; finished steps never ran again
    wait_status(job.pk, JobStatus.SUCCEEDED, timeout=60)
    lines = read_lines(side_effects)
    assert lines.count("one:start") == 1 and lines.count("two:start") == 1
    assert lines.count("slow:start") == 2, "only the interrupted step is repeated"
    assert lines.count("slow:end") == 1 and lines.count("three:end") == 1
    assert Job.objects.get(pk=job.pk).result == {"done": ["one", "two", "slow", "three"]}


def test_a_step_that_always_kills_its_worker_fails_after_max_attempts(worker, side_effects: Path):
    job = job_create(job_type="test-suicide", input={"log": str(side_effects)}, max_attempts=2)

    wait_status(job.pk, JobStatus.FAILED, timeout=60)
    job.refresh_from_db()
    assert job.error_type == "WorkerLost"
    lines = read_lines(side_effects)
    assert lines.count("ok") == 1 and lines.count("boom") == 2


def test_cancel_of_a_run_whose_worker_died_is_honoured(worker, side_effects: Path, tmp_path: Path):
    # the slow step waits for a file that never comes: only the kill stops it
    job = job_create(
        job_type="test-counting",
        input={"log": str(side_effects), "release": str(tmp_path / "never")},
    )
    wait_for(lambda: "slow:start" in read_lines(side_effects), message="slow step to start")
    pid = running_pid(job.pk)
    os.kill(pid, signal.SIGKILL)
    job_cancel(job=job)  # still `running` (lease not expired): cancel is requested

    wait_status(job.pk, JobStatus.CANCELLED, timeout=30)
    assert read_lines(side_effects).count("three:start") == 0


def test_duplicate_delivery_cannot_run_a_job_twice_at_once(
    worker, side_effects: Path, tmp_path: Path
):
    # Redis re-delivers an unacked message after visibility_timeout; a second
    # delivery must find the lease taken.
    release = tmp_path / "release"
    job = job_create(
        job_type="test-counting", input={"log": str(side_effects), "release": str(release)}
    )
    wait_for(lambda: "slow:start" in read_lines(side_effects), message="slow step to start")

    assert engine.run_job(str(job.pk)) == "skipped"  # a second consumer, right now
    send_run_message(str(job.pk), job.priority)  # and a duplicate on the broker
    release.touch()

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert read_lines(side_effects).count("slow:start") == 1
    assert read_lines(side_effects).count("three:start") == 1


def test_lost_message_is_recovered_by_the_reconciler(worker):
    # A job whose enqueue never reached the broker (crash between commit and
    # publish, or a broker that forgot it): only the database knows it.
    job = Job.objects.create(
        organization=default_organization(),
        job_type="simple-task",
        input={},
        status=JobStatus.QUEUED,
    )

    wait_status(job.pk, JobStatus.SUCCEEDED, timeout=20)
    assert Job.objects.get(pk=job.pk).last_enqueued_at is not None


def test_a_job_created_in_a_transaction_is_enqueued_only_after_commit(worker):
    # A message sent before the commit would reach a worker that cannot see the
    # row; that run would be dropped and the job left to the reconciler (1.5 s
    # grace here). Enqueued on commit, it runs at once.
    seen_outside: list[bool] = []

    def visible_elsewhere(job_id: object) -> bool:
        def look() -> None:
            seen_outside.append(Job.objects.filter(pk=job_id).exists())
            connection.close()

        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
        return seen_outside[-1]

    with transaction.atomic():
        job = job_create(job_type="simple-task")
        assert not visible_elsewhere(job.pk)
        wait_for(lambda: transaction.get_connection().run_on_commit, message="on_commit hook")
    committed = time.monotonic()

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert time.monotonic() - committed < 1.2
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_durable_timer_suspends_and_resumes(worker):
    job = job_create(job_type="test-sleep", input={"seconds": 1.0})

    wait_status(job.pk, JobStatus.WAITING)
    waiting = Job.objects.get(pk=job.pk)
    assert waiting.wait_reason == "timer" and waiting.wake_at is not None
    assert waiting.lease_owner == ""  # no worker holds it while it sleeps

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=job.pk).result["slept"] >= 1.0


def test_timer_fires_from_the_database_when_its_message_is_lost(worker):
    # The countdown message (an hour away) stands for the one a Redis restart
    # would lose; the wake time is in the database and the reconciler acts on it.
    job = job_create(job_type="test-sleep", input={"seconds": 3600})
    wait_status(job.pk, JobStatus.WAITING)

    # an hour passes (for the timer's stored deadline and the job's wake time)
    past = timezone.now() - timedelta(seconds=5)
    JobStep.objects.filter(job=job, key="nap").update(output={"until": past.isoformat()})
    Job.objects.filter(pk=job.pk).update(wake_at=past)

    wait_status(job.pk, JobStatus.SUCCEEDED, timeout=20)


def test_one_worker_slot_carries_many_paused_jobs(worker):
    # The session worker has a single pool process: if waiting held a slot,
    # the second job would never start.
    creator, approver = make_user("creator"), make_user("approver", approver=True)
    jobs = [job_create(job_type="test-approval", created_by=creator) for _ in range(40)]

    wait_for(
        lambda: Job.objects.filter(status=JobStatus.WAITING).count() == 40,
        timeout=60,
        message="all 40 jobs waiting at their checkpoints",
    )
    for checkpoint in Checkpoint.objects.filter(status=CheckpointStatus.PENDING):
        services.checkpoint_approve(checkpoint=checkpoint, user=approver)

    wait_for(
        lambda: (
            Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.SUCCEEDED).count()
            == 40
        ),
        timeout=60,
        message="all 40 jobs to finish",
    )


@pytest.mark.parametrize("priority", [-1, 10])
def test_priority_out_of_range_is_refused(worker, priority):
    from jobs.services import JobError

    with pytest.raises(JobError, match="priority"):
        job_create(job_type="simple-task", priority=priority)
    assert not Job.objects.exists()
