"""On PostgreSQL a run's outcome, its last step and its events are one statement, and
only if the run still holds the lease; a number taken meanwhile falls back to the
statement-by-statement path, which renumbers."""

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from accounts.services import default_organization
from jobs.models import Job, JobEvent, JobStatus, JobStep
from jobs.runtime import JobContext, append_event, handler
from jobs.runtime.engine import run_job
from jobs.runtime.errors import RunInterrupted

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_runtime")]


@handler("test-fold-meddle")
def meddle(ctx: JobContext) -> str:
    ctx.step("one", lambda: None)  # held until the outcome: None must still be stored
    if ctx.input["meddle"] == "steal":  # another run took the job over
        Job.objects.filter(pk=ctx.job.pk).update(lease_owner="another-run")
    elif ctx.input["meddle"] == "event":  # a service writes the number the run would use
        append_event(ctx.job_id, "service.note", {})
    return "done"


def unsent(job_type: str, **input: str) -> Job:
    """A queued job no worker hears of: the session's worker (which has not these
    handlers) must not run it first; its run here follows at once, well within the
    reconciler's grace."""
    return Job.objects.create(
        organization=default_organization(), job_type=job_type, input=input, status="queued"
    )


def kinds(job: Job) -> list[str]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("kind", flat=True))


def test_a_one_step_run_is_two_round_trips():
    job = unsent("test-fold-meddle", meddle="")
    with CaptureQueriesContext(connection) as captured:
        assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    assert [q["sql"].split()[0] for q in captured] == ["UPDATE", "WITH"]  # claim, end
    job.refresh_from_db()
    assert job.result == "done" and job.lease_owner == ""
    step = JobStep.objects.get(job=job)
    assert (step.key, step.status, step.output) == ("one", "succeeded", None)
    assert kinds(job) == ["job.started", "job.succeeded"]


def test_a_run_that_lost_its_lease_writes_nothing():
    job = unsent("test-fold-meddle", meddle="steal")
    assert run_job(str(job.pk)) == "lease-lost"
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.lease_owner == "another-run"
    assert not JobStep.objects.filter(job=job).exists()
    assert kinds(job) == []


def test_an_event_number_taken_meanwhile_is_renumbered():
    job = unsent("test-fold-meddle", meddle="event")
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    assert kinds(job) == ["service.note", "job.started", "job.succeeded"]
    assert JobStep.objects.filter(job=job, key="one").exists()


KILLED: list[int] = []


@handler("test-fold-killed")
def killed(ctx: JobContext) -> str:
    def end_my_backend() -> None:
        if not KILLED:  # once: a killed backend, as a database restart would leave
            KILLED.append(connection.connection.info.backend_pid)
            other = connections.create_connection("default")
            try:
                other.cursor().execute("SELECT pg_terminate_backend(%s)", [KILLED[0]])
            finally:
                other.close()
            connection.settings_dict["PORT"] = "1"  # and the server stays away for now

    ctx.step("one", end_my_backend)
    ctx.step("two", lambda: None)  # its first write finds the connection gone
    return "done"


def test_a_run_the_database_drops_is_interrupted_then_goes_on_without_an_attempt():
    KILLED.clear()
    job = unsent("test-fold-killed")
    Job.objects.filter(pk=job.pk).update(concurrency_key="test:killed")  # as agents' jobs
    port = connection.settings_dict["PORT"]
    try:
        with pytest.raises(RunInterrupted) as interrupted:
            run_job(str(job.pk))
    finally:
        connection.settings_dict["PORT"] = port
        connection.close()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.lease_owner == interrupted.value.owner
    assert run_job(str(job.pk), interrupted=interrupted.value.owner) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.attempts == 1 and job.result == "done"
