"""simple-task never pauses; urgent jobs overtake waiting ones on the broker."""

from pathlib import Path

from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus
from jobs.services import job_create
from tests.conftest import read_lines
from tests.utils import wait_for, wait_status


def test_simple_task_records_an_info_checkpoint_without_pausing(worker):
    job = job_create(job_type="simple-task", input={"description": "tidy", "data": {"a": 1}})

    wait_status(job.pk, JobStatus.SUCCEEDED)
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.kind == "info" and checkpoint.status == CheckpointStatus.APPROVED
    kinds = list(job.events.values_list("kind", flat=True))
    assert "job.waiting" not in kinds and kinds.count("progress") == 2
    assert Job.objects.get(pk=job.pk).result == {"description": "tidy", "field_count": 1}


def test_urgent_jobs_start_before_queued_routine_ones(worker, side_effects: Path, tmp_path: Path):
    # given the single worker slot busy, so new messages wait on the broker
    release = tmp_path / "release"
    blocker = job_create(
        job_type="test-counting", input={"log": str(side_effects), "release": str(release)}
    )
    wait_for(lambda: "slow:start" in read_lines(side_effects), message="the slot to be busy")
    routine = [job_create(job_type="test-noop", priority=0) for _ in range(3)]
    urgent = [job_create(job_type="test-noop", priority=9) for _ in range(3)]

    # when the slot frees up
    release.touch()

    # then every urgent job started before any routine one
    wait_status(blocker.pk, JobStatus.SUCCEEDED)
    everything = [j.pk for j in routine + urgent]
    wait_for(
        lambda: Job.objects.filter(pk__in=everything, status=JobStatus.SUCCEEDED).count() == 6,
        message="all six jobs to finish",
    )
    started = dict(Job.objects.filter(pk__in=everything).values_list("pk", "started_at"))
    assert max(started[j.pk] for j in urgent) < min(started[j.pk] for j in routine)
