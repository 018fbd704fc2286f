"""On PostgreSQL a run's outcome, its last step and its events are one statement, and
only if the run still holds the lease; a number taken meanwhile falls back to the
statement-by-statement path, which renumbers."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import Job, JobEvent, JobStatus, JobStep
from jobs.runtime import JobContext, append_event, handler
from jobs.runtime.engine import run_job
from jobs.services import job_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_runtime")]


@handler("test-fold-meddle")
def meddle(ctx: JobContext) -> str:
    ctx.step("one", lambda: None)  # held until the outcome: None must still be stored
    if ctx.input["meddle"] == "steal":  # another run took the job over
        Job.objects.filter(pk=ctx.job.pk).update(lease_owner="another-run")
    elif ctx.input["meddle"] == "event":  # a service writes the number the run would use
        append_event(ctx.job_id, "service.note", {})
    return "done"


def kinds(job: Job) -> list[str]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("kind", flat=True))


def test_a_one_step_run_is_two_round_trips():
    job = job_create(job_type="test-fold-meddle", input={"meddle": ""})
    with CaptureQueriesContext(connection) as captured:
        assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    assert [q["sql"].split()[0] for q in captured] == ["UPDATE", "WITH"]  # claim, end
    job.refresh_from_db()
    assert job.result == "done" and job.lease_owner == ""
    step = JobStep.objects.get(job=job)
    assert (step.key, step.status, step.output) == ("one", "succeeded", None)
    assert kinds(job) == ["job.queued", "job.started", "job.succeeded"]


def test_a_run_that_lost_its_lease_writes_nothing():
    job = job_create(job_type="test-fold-meddle", input={"meddle": "steal"})
    assert run_job(str(job.pk)) == "lease-lost"
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.lease_owner == "another-run"
    assert not JobStep.objects.filter(job=job).exists()
    assert kinds(job) == ["job.queued"]


def test_an_event_number_taken_meanwhile_is_renumbered():
    job = job_create(job_type="test-fold-meddle", input={"meddle": "event"})
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    assert kinds(job) == ["job.queued", "service.note", "job.started", "job.succeeded"]
    assert JobStep.objects.filter(job=job, key="one").exists()
