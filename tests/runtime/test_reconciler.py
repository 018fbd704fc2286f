"""The reconciler re-sends lost messages, but not ones waiting in a backlog."""

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Connection, Exchange, Producer, Queue

from accounts.services import default_organization
from jobs.models import Job, JobStatus
from jobs.runtime.reconciler import reconcile

pytestmark = pytest.mark.django_db


@pytest.fixture
def backlog_queue(settings):
    """A queue of its own holding messages, standing for a busy broker."""
    name = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-backlog"
    settings.CELERY_TASK_DEFAULT_QUEUE = name
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = Queue(name, Exchange(name), routing_key=name)
        producer = Producer(conn.default_channel)
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        yield name
        conn.default_channel.queue_delete(name)


def stranded_job(age_seconds: float) -> Job:
    return Job.objects.create(
        organization=default_organization(),
        job_type="simple-task",
        status=JobStatus.QUEUED,
        last_enqueued_at=timezone.now() - timedelta(seconds=age_seconds),
    )


def test_a_queued_job_past_its_grace_is_re_sent():
    job = stranded_job(age_seconds=60)
    assert reconcile() == 1
    job.refresh_from_db()
    assert timezone.now() - job.last_enqueued_at < timedelta(seconds=5)


def test_a_recently_enqueued_job_is_left_alone():
    stranded_job(age_seconds=0)
    assert reconcile() == 0


def test_with_a_backlog_queued_jobs_get_the_longer_grace(backlog_queue, settings):
    settings.COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS = 600
    stranded_job(age_seconds=60)
    assert reconcile() == 0
    stranded_job(age_seconds=700)
    assert reconcile() == 1


def test_abandoned_runs_and_due_timers_are_re_sent_whatever_the_backlog(backlog_queue):
    past = timezone.now() - timedelta(seconds=60)
    Job.objects.create(
        organization=default_organization(),
        job_type="simple-task",
        status=JobStatus.RUNNING,
        lease_owner="dead",
        lease_expires_at=past,
        last_enqueued_at=past,
    )
    Job.objects.create(
        organization=default_organization(),
        job_type="test-sleep",
        status=JobStatus.WAITING,
        wait_reason="timer",
        wake_at=past,
        last_enqueued_at=past,
    )
    Job.objects.create(
        organization=default_organization(),
        job_type="test-approval",
        status=JobStatus.WAITING,
        wait_reason="checkpoint",
        last_enqueued_at=past,
    )
    assert reconcile() == 2


def test_with_an_empty_queue_queued_jobs_get_the_short_grace(settings):
    # A broker restarted empty: the queue is gone, so messages older than the idle
    # grace were taken or lost, and are sent again well before the normal grace.
    settings.CELERY_TASK_DEFAULT_QUEUE = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-empty"
    settings.COUNTERSIGN_RECONCILE_GRACE_SECONDS = 600
    settings.COUNTERSIGN_RECONCILE_IDLE_GRACE_SECONDS = 2
    stranded_job(age_seconds=1)
    assert reconcile() == 0
    stranded_job(age_seconds=3)
    assert reconcile() == 1
