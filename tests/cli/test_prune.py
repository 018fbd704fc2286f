"""`manage.py prune`: ages as 30d/12h/90m, --dry-run counting what the real run deletes,
--json, and clear refusals."""

from datetime import timedelta

import pytest
from django.core.management.base import CommandError

from checkpoints.models import Checkpoint, CheckpointDecision
from jobs.models import Job, JobEvent, JobStep
from jobs.runtime import job_workspace
from tests.factories import add_history, make_finished_job

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def old_tree() -> list[Job]:
    root = make_finished_job(age=40 * DAY)
    child = make_finished_job(age=40 * DAY, parent=root)
    add_history(root)
    add_history(child)
    return [root, child]


def rows() -> dict[str, int]:
    return {
        "jobs": Job.objects.count(),
        "steps": JobStep.objects.count(),
        "events": JobEvent.objects.count(),
        "checkpoints": Checkpoint.objects.count(),
        "decisions": CheckpointDecision.objects.filter(checkpoint__isnull=False).count(),
    }


def test_a_dry_run_deletes_nothing_and_counts_what_the_real_run_deletes(
    cli, old_tree, django_capture_on_commit_callbacks
):
    # given an old tree and a young job
    young = make_finished_job(age=DAY)
    before = rows()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        dry = cli.json("prune", "--older-than", "30d", "--dry-run")

    # then nothing changed
    assert rows() == before
    assert all(job_workspace(str(job.pk)).is_dir() for job in old_tree)
    assert dry["dry_run"] is True

    # when it is run for real
    with django_capture_on_commit_callbacks(execute=True):
        done = cli.json("prune", "--older-than", "30d")

    # then it deleted what the dry run counted
    assert done["dry_run"] is False
    assert (done["deleted"], done["kept"], done["batches"]) == (
        dry["deleted"],
        dry["kept"],
        dry["batches"],
    )
    assert done["deleted"]["jobs.Job"] == 2
    assert done["deleted"]["workspaces"] == 2
    assert done["kept"] == {"checkpoints.CheckpointDecision": 2}
    assert list(Job.objects.all()) == [young]
    assert not any(job_workspace(str(job.pk)).exists() for job in old_tree)


def test_json_output_shape(cli, old_tree):
    out = cli.json("prune", "--older-than", "12h", "--dry-run")

    assert set(out) == {"dry_run", "older_than_seconds", "cutoff", "batches", "deleted", "kept"}
    assert out["older_than_seconds"] == 12 * 3600
    assert isinstance(out["cutoff"], str)
    assert out["batches"] == 1
    assert out["deleted"] == {
        "checkpoints.Checkpoint": 2,
        "checkpoints.CheckpointDecision": 0,
        "checkpoints.WebhookDelivery": 2,
        "django_celery_results.GroupResult": 0,
        "django_celery_results.TaskResult": 0,
        "jobs.Job": 2,
        "jobs.JobEvent": 6,
        "jobs.JobStep": 4,
        "workflows.EventWait": 0,
        "workflows.WorkflowRun": 0,
        "workspaces": 2,
    }
    assert out["kept"] == {"checkpoints.CheckpointDecision": 2}


def test_text_output_names_each_kind(cli, old_tree):
    out = cli("prune", "--older-than", "90m", "--dry-run")

    assert out.startswith("Would delete (jobs finished before ")
    assert "jobs.Job                           2" in out
    assert "Kept beyond their jobs" in out
    assert Job.objects.count() == 2


@pytest.mark.parametrize(
    "age", ["30", "d", "0d", "-1d", "1.5d", "30 days", "30x", "３0d", "9" * 13, ""]
)
def test_a_bad_age_is_refused(cli, old_tree, age):
    with pytest.raises(CommandError, match="--older-than"):
        cli("prune", "--older-than", age)
    assert Job.objects.count() == 2


def test_an_age_over_a_century_is_refused(cli):
    with pytest.raises(CommandError, match="at most 36500d"):
        cli("prune", "--older-than", "36501d")


def test_the_age_defaults_to_the_setting(cli, old_tree, settings):
    with pytest.raises(CommandError, match="COUNTERSIGN_RETENTION_DAYS is 0"):
        cli("prune")

    settings.COUNTERSIGN_RETENTION_DAYS = 41
    assert cli.json("prune")["deleted"]["jobs.Job"] == 0

    settings.COUNTERSIGN_RETENTION_DAYS = 39
    out = cli.json("prune", "--batch-size", "1")
    assert (out["deleted"]["jobs.Job"], out["older_than_seconds"]) == (2, 39 * 86400)


def test_a_batch_size_below_one_is_refused(cli, old_tree):
    with pytest.raises(CommandError, match="--batch-size"):
        cli("prune", "--older-than", "1d", "--batch-size", "0")
