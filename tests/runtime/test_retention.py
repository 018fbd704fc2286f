"""Retention (jobs/retention.py): finished job trees older than the age go whole, with
everything hanging on them; nothing younger, unfinished or still needed by an unfinished
parent; decisions outlive their job until their own age; task results expire; bounded
batches, and the beat task's one bounded pass."""

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from accounts.services import default_organization
from checkpoints.models import Checkpoint, CheckpointDecision, WebhookDelivery
from config.celery import app
from jobs import retention, tasks
from jobs.models import Job, JobEvent, JobStatus, JobStep
from jobs.retention import retention_prune
from jobs.runtime import job_workspace
from tests.factories import add_history, make_finished_job, make_user
from workflows.models import EventWait, Workflow, WorkflowRun, WorkflowVersion

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
MONTH = 30 * DAY
DECISION = "checkpoints.CheckpointDecision"


@pytest.fixture(autouse=True)
def workspaces(settings, tmp_path: Path) -> Path:
    settings.COUNTERSIGN_WORKSPACE_ROOT = tmp_path
    return tmp_path


def prune(**options):
    return retention_prune(**{"older_than": MONTH, "batch_size": 500, **options})


def remaining(*jobs: Job) -> set[Job]:
    return set(Job.objects.filter(pk__in=[job.pk for job in jobs]))


def test_an_old_finished_tree_goes_whole_with_all_that_hangs_on_it(
    django_capture_on_commit_callbacks,
):
    # given a workflow run with a branch and a grandchild, all finished 40 days ago
    root = make_finished_job(age=40 * DAY)
    child = make_finished_job(age=40 * DAY, parent=root, status=JobStatus.FAILED)
    grandchild = make_finished_job(age=41 * DAY, parent=child, status=JobStatus.CANCELLED)
    for job in (root, grandchild):
        add_history(job)
    workflow = Workflow.objects.create(organization=root.organization, slug="flow", name="Flow")
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=1, definition={}, checksum=""
    )
    WorkflowRun.objects.create(
        job=root, workflow=workflow, version=version, organization=root.organization
    )
    EventWait.objects.create(
        job=child,
        key="wait",
        run=root,
        organization=root.organization,
        name="x",
        since=root.created_at,
    )

    # when
    with django_capture_on_commit_callbacks(execute=True):
        report = prune()

    # then nothing of it is left, the workspaces neither
    assert not remaining(root, child, grandchild)
    assert not JobStep.objects.exists() and not JobEvent.objects.exists()
    assert not Checkpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert not WorkflowRun.objects.exists() and not EventWait.objects.exists()
    assert not job_workspace(str(root.pk)).exists()
    assert not job_workspace(str(grandchild.pk)).exists()
    assert report.batches == 1
    assert report.deleted == {
        "jobs.Job": 3,
        "jobs.JobStep": 4,
        "jobs.JobEvent": 6,
        "checkpoints.Checkpoint": 2,
        "checkpoints.WebhookDelivery": 2,
        "workflows.WorkflowRun": 1,
        "workflows.EventWait": 1,
        DECISION: 0,  # kept: the audit trail
        "workspaces": 2,
        "django_celery_results.TaskResult": 0,
        "django_celery_results.GroupResult": 0,
    }
    assert report.kept == {DECISION: 2}
    assert Workflow.objects.filter(pk=workflow.pk).exists()  # the workflow is not the run's


def test_nothing_younger_or_unfinished_goes():
    # given jobs that finished 29 days ago, and jobs that never finished
    young = make_finished_job(age=29 * DAY)
    add_history(young)
    unfinished = [
        Job.objects.create(organization=young.organization, job_type="test-noop", status=status)
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.WAITING, JobStatus.RETRYING)
    ]
    old = make_finished_job(age=31 * DAY)

    # when
    report = prune()

    # then only the old one went
    assert remaining(young, old, *unfinished) == {young, *unfinished}
    assert report.deleted["jobs.Job"] == 1
    assert Checkpoint.objects.filter(job=young).exists()
    assert job_workspace(str(young.pk)).exists()


def test_a_tree_stays_while_any_job_in_it_is_unfinished_or_younger():
    # given old finished jobs that an unfinished or younger job of their tree still needs,
    # each older than an old tree that may go
    waiting_parent = Job.objects.create(
        organization=default_organization(),
        job_type="test-noop",
        status=JobStatus.WAITING,
    )
    needed_child = make_finished_job(age=60 * DAY, parent=waiting_parent)
    add_history(needed_child)
    root_of_waiting = make_finished_job(age=60 * DAY)
    waiting_child = Job.objects.create(
        organization=root_of_waiting.organization,
        job_type="test-noop",
        status=JobStatus.WAITING,
        parent=root_of_waiting,
    )
    root_of_young = make_finished_job(age=60 * DAY)
    middle = make_finished_job(age=60 * DAY, parent=root_of_young)
    young_grandchild = make_finished_job(age=DAY, parent=middle)
    free = make_finished_job(age=40 * DAY)

    # when one batch of one job is all a pass may delete
    report = prune(batch_size=1, max_batches=1)

    # then the trees that must stay were passed by, and the one behind them went
    assert remaining(free) == set()
    assert remaining(
        waiting_parent, needed_child, root_of_waiting, waiting_child, root_of_young, middle
    ) == {waiting_parent, needed_child, root_of_waiting, waiting_child, root_of_young, middle}
    assert remaining(young_grandchild) == {young_grandchild}
    assert Checkpoint.objects.filter(job=needed_child).exists()
    assert report.deleted["jobs.Job"] == 1


def test_decisions_outlive_their_job_until_their_own_age(settings):
    # given decisions kept for 90 days, and a job of 40 days with an approved checkpoint
    settings.COUNTERSIGN_DECISION_RETENTION_DAYS = 90
    alice = make_user("alice")
    job = make_finished_job(age=40 * DAY)
    add_history(job, decided_by=alice)
    live = make_finished_job(age=DAY)
    add_history(live)
    CheckpointDecision.objects.update(created_at=timezone.now() - 100 * DAY)

    # when the job goes
    report = prune()

    # then its decision stays, saying what it was about
    assert not remaining(job)
    decision = CheckpointDecision.objects.get(user=alice)
    assert decision.checkpoint is None
    assert (decision.job_ref, decision.job_type, decision.organization) == (
        job.pk,
        "test-noop",
        job.organization,
    )
    assert (decision.checkpoint_key, decision.checkpoint_title) == ("review", "Review the plan")
    assert (decision.verdict, decision.reason) == ("approved", "")
    assert report.kept[DECISION] == 1
    assert report.deleted[DECISION] == 0

    # when a later pass finds it past its own age
    report = prune()

    # then it goes; the live job's decision, as old, stays with its checkpoint
    assert report.deleted[DECISION] == 1
    assert list(CheckpointDecision.objects.values_list("checkpoint__job", flat=True)) == [live.pk]


def test_decisions_are_kept_forever_by_default(settings):
    assert settings.COUNTERSIGN_DECISION_RETENTION_DAYS == 0
    add_history(make_finished_job(age=40 * DAY))
    CheckpointDecision.objects.update(created_at=timezone.now() - 3650 * DAY)

    prune()
    report = prune()

    assert report.deleted[DECISION] == 0
    assert CheckpointDecision.objects.get().checkpoint is None


def test_batches_are_bounded():
    # given five old jobs, and a tree of three
    jobs = [make_finished_job(age=(40 + n) * DAY) for n in range(5)]
    tree = make_finished_job(age=35 * DAY)
    children = [make_finished_job(age=35 * DAY, parent=tree) for _ in range(2)]

    # when a pass may delete one batch of two
    report = prune(batch_size=2, max_batches=1)

    # then the two oldest went
    assert remaining(*jobs) == set(jobs[:3])
    assert report.deleted["jobs.Job"] == 2

    # when a pass goes on until nothing is left
    report = prune(batch_size=2)

    # then in batches of two jobs, the tree larger than a batch alone
    assert not remaining(*jobs, tree, *children)
    assert (report.batches, report.deleted["jobs.Job"]) == (3, 6)


def test_task_results_past_their_expiry_go_even_with_jobs_kept(settings):
    settings.CELERY_RESULT_EXPIRES = 3600
    for n in range(3):
        TaskResult.objects.create(task_id=f"old-{n}", status="SUCCESS")
    TaskResult.objects.update(date_done=timezone.now() - timedelta(hours=2))
    TaskResult.objects.create(task_id="fresh", status="SUCCESS")

    report = prune(older_than=None, batch_size=2)

    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["fresh"]
    assert report.deleted["django_celery_results.TaskResult"] == 3
    assert report.batches == 0  # no job was looked at


def test_the_beat_task_makes_one_bounded_pass_and_nothing_when_retention_is_off(settings):
    assert settings.CELERY_BEAT_SCHEDULE["prune"]["task"] == tasks.prune.name == "jobs.prune"
    assert "jobs.prune" in app.tasks
    jobs = [make_finished_job(age=(40 + n) * DAY) for n in range(3)]

    settings.COUNTERSIGN_RETENTION_DAYS = 0
    tasks.prune()
    assert remaining(*jobs) == set(jobs)

    settings.COUNTERSIGN_RETENTION_DAYS = 30
    settings.COUNTERSIGN_RETENTION_BATCH = 2
    tasks.prune()
    assert remaining(*jobs) == {jobs[0]}


def test_a_tree_whose_job_was_retried_after_it_was_read_stays(monkeypatch):
    root = make_finished_job(age=40 * DAY)
    child = make_finished_job(age=40 * DAY, parent=root)
    read = retention._whole_trees

    def and_then_a_retry(*args, **kwargs):
        trees = read(*args, **kwargs)
        Job.objects.filter(pk=child.pk).update(status=JobStatus.QUEUED, finished_at=None)
        return trees

    monkeypatch.setattr(retention, "_whole_trees", and_then_a_retry)
    report = prune()

    assert remaining(root, child) == {root, child}
    assert report.deleted["jobs.Job"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_tree_whose_job_another_transaction_holds_is_left_for_a_later_pass():
    # given an old tree whose child another transaction has locked (a run ending, a retry)
    root = make_finished_job(age=40 * DAY)
    child = make_finished_job(age=40 * DAY, parent=root)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Job.objects.select_for_update().get(pk=child.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(timeout=30)

    # when a pass comes meanwhile, it neither waits nor deletes
    try:
        report = prune()
    finally:
        release.set()
        holder.join(timeout=30)
    assert remaining(root, child) == {root, child}
    assert report.deleted["jobs.Job"] == 0

    # then the next pass deletes the tree
    assert prune().deleted["jobs.Job"] == 2
