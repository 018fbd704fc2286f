"""Round trips: finished steps cost nothing on replay; a new step costs one write."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import default_organization
from checkpoints import services
from checkpoints.models import Checkpoint
from jobs.models import JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def queries_for_run(job_type: str, input: dict) -> int:
    job = job_create(job_type=job_type, input=input)
    with CaptureQueriesContext(connection) as captured:
        assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    return len(captured)


def test_each_further_step_adds_at_most_one_round_trip():
    one = queries_for_run("test-noop", {"steps": 1})
    eleven = queries_for_run("test-noop", {"steps": 11})
    assert eleven - one <= 10


def test_replayed_steps_cost_no_queries():
    creator, approver = make_user("creator"), make_user("alice", approver=True)

    def resume_queries(steps: int) -> int:
        job = job_create(
            job_type="test-steps-then-pause", created_by=creator, input={"steps": steps}
        )
        assert run_job(str(job.pk)) == JobStatus.WAITING
        services.checkpoint_approve(checkpoint=Checkpoint.objects.get(job=job), user=approver)
        with CaptureQueriesContext(connection) as captured:
            assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
        return len(captured)

    # replaying 2 or 40 finished steps costs the same number of round trips
    assert resume_queries(2) == resume_queries(40)


def test_all_finished_steps_load_in_one_query():
    job = job_create(job_type="test-noop", input={"steps": 5})
    run_job(str(job.pk))
    from jobs.models import Job

    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    with CaptureQueriesContext(connection) as captured:
        run_job(str(job.pk))
    # On PostgreSQL (the suite's database) with the claim, in its UPDATE … RETURNING.
    step_reads = [
        q
        for q in captured
        if q["sql"].lstrip().startswith(("SELECT", 'UPDATE "agents_job" '))
        and '"agents_jobstep"' in q["sql"]
    ]
    step_writes = [
        q
        for q in captured
        if q["sql"].startswith(('INSERT INTO "agents_jobstep"', 'UPDATE "agents_jobstep"'))
    ]
    assert len(step_reads) == 1 and step_writes == []


def test_an_idempotency_key_returns_the_first_job():
    creator = make_user("creator")
    first = job_create(job_type="simple-task", idempotency_key="k1", created_by=creator)
    again = job_create(job_type="simple-task", idempotency_key="k1", created_by=creator)
    other = job_create(job_type="simple-task", idempotency_key="k1", created_by=make_user("x"))
    anonymous = job_create(job_type="simple-task", idempotency_key="k1")
    anonymous_again = job_create(job_type="simple-task", idempotency_key="k1")
    assert first.pk == again.pk and other.pk != first.pk
    assert anonymous.pk == anonymous_again.pk and anonymous.pk not in (first.pk, other.pk)


def test_the_database_refuses_a_second_anonymous_job_with_the_same_key():
    from django.db import IntegrityError, transaction

    from jobs.models import Job

    Job.objects.create(
        organization=default_organization(), job_type="simple-task", idempotency_key="dup"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(
            organization=default_organization(), job_type="simple-task", idempotency_key="dup"
        )
