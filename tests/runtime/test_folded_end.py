"""On PostgreSQL a run's outcome, its last step and its events are one statement, and
only if the run still holds the lease; a number taken meanwhile falls back to the
statement-by-statement path, which renumbers."""

import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import default_organization
from jobs.models import Job, JobEvent, JobStatus, JobStep
from jobs.runtime import JobContext, append_event, folded, handler, leases, queue
from jobs.runtime.engine import run_job
from jobs.runtime.errors import RunInterrupted
from jobs.services import job_create
from tests.factories import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_runtime")]


@pytest.fixture(autouse=True)
def no_run_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jobs made here run in this process (`run_job`) or not at all. A run message
    would have the session's worker (if one is up) run them too, perhaps still while the
    test's tables are truncated, where the two deadlock."""
    monkeypatch.setattr(queue, "send_run_message", lambda *args, **kwargs: None)


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
    reconciler's grace (which starts at its enqueue time: without one, it is overdue)."""
    return Job.objects.create(
        organization=default_organization(),
        job_type=job_type,
        input=input,
        status="queued",
        last_enqueued_at=timezone.now(),
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


def test_a_new_job_and_its_first_event_are_one_statement():
    default_organization()  # made on first use
    with CaptureQueriesContext(connection) as captured:
        job = job_create(job_type="test-fold-meddle", input={"meddle": ""})
    writes = [q["sql"] for q in captured if not q["sql"].startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("WITH created AS (INSERT"), writes
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.input, stored.last_enqueued_at) == (
        JobStatus.QUEUED,
        {"meddle": ""},
        job.last_enqueued_at,
    )
    first = JobEvent.objects.filter(job=job).order_by("seq").first()
    assert (first.seq, first.kind, first.data) == (
        1,
        "job.queued",
        {"job_type": "test-fold-meddle", "priority": 5},
    )


def test_a_key_taken_meanwhile_returns_that_job_and_spares_the_callers_transaction(
    monkeypatch,
):
    """Two requests with one idempotency key: the other one inserts between this one's
    look-up and its insert. The duplicate writes nothing (no job, no event), and a
    surrounding transaction goes on."""
    creator = make_user("racer")
    won: list[Job] = []
    raced = [False]
    lookup = Job.objects.filter

    def racing_lookup(*args, **kwargs):
        if kwargs.get("idempotency_key") == "k" and not raced[0]:
            raced[0] = True
            won.append(job_create(job_type="simple-task", idempotency_key="k", created_by=creator))
            return lookup(pk=None)  # this request saw no job with the key
        return lookup(*args, **kwargs)

    monkeypatch.setattr(Job.objects, "filter", racing_lookup)
    with transaction.atomic():
        job = job_create(job_type="simple-task", idempotency_key="k", created_by=creator)
        assert Job.objects.count() == 1  # the transaction is still usable
    assert job.pk == won[0].pk
    assert JobEvent.objects.filter(kind="job.queued").count() == 1


def test_a_value_too_long_for_its_column_is_refused_not_cut_short():
    """As the ORM's INSERT: a 201-character concurrency key is an error, and nothing is
    written (a key cut to 200 would join another key's jobs)."""
    from django.db import DataError

    from jobs.runtime import folded

    job = Job(
        organization=default_organization(), job_type="simple-task", concurrency_key="k" * 201
    )
    event = JobEvent(job_id=job.pk, seq=1, kind="job.queued", data={})
    with pytest.raises(DataError):
        folded.create_job(job, event)
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not JobEvent.objects.filter(job_id=job.pk).exists()


def test_an_idempotency_key_longer_than_its_column_is_kept_as_its_digest():
    """Keys built from nested step keys (workflows, agents' child jobs) can pass the
    column's 200 characters: the same long key finds the same job, and two that share
    their first 200 characters are two jobs."""
    default_organization()
    long = "branch:" + "x" * 250
    first = job_create(job_type="simple-task", idempotency_key=long + "a")
    again = job_create(job_type="simple-task", idempotency_key=long + "a")
    other = job_create(job_type="simple-task", idempotency_key=long + "b")
    assert first.pk == again.pk and other.pk != first.pk
    assert len(Job.objects.get(pk=first.pk).idempotency_key) <= 200


def test_the_claim_reads_the_job_and_its_steps_as_the_orm_does():
    job = unsent("test-fold-meddle", meddle="")
    # Not runnable while its steps are written: nobody else may claim it meanwhile.
    Job.objects.filter(pk=job.pk).update(status="succeeded", result={"a": [1.5, None]})
    started = timezone.now()
    outputs: list[object] = [{"nested": [1, 2.5, None, "é"]}, None, "text", 10**20, [], 0.1]
    for position, output in enumerate(outputs):
        JobStep.objects.create(
            job=job,
            key=f"k{position}",
            position=len(outputs) - position,  # not the order they were inserted in
            status="succeeded" if position else "waiting",
            output=output,
            attempt=position + 1,
            started_at=started,
            finished_at=None if position == 2 else started + timedelta(microseconds=position),
        )

    Job.objects.filter(pk=job.pk).update(status="queued", last_enqueued_at=timezone.now())
    claimed = leases.claim(str(job.pk), "owner")

    assert claimed is not None and claimed.steps is not None  # none read after it
    fields = [f.attname for f in JobStep._meta.concrete_fields]
    expected = [[getattr(s, f) for f in fields] for s in JobStep.objects.filter(job=job)]
    assert [[getattr(s, f) for f in fields] for s in claimed.recorded_steps()] == expected
    assert all(not s._state.adding for s in claimed.steps)
    columns = [f.attname for f in Job._meta.concrete_fields]
    stored = Job.objects.get(pk=job.pk)
    assert [getattr(claimed.job, f) for f in columns] == [getattr(stored, f) for f in columns]


def test_only_a_claim_outside_a_transaction_relaxes_its_commit():
    def claim(job: Job) -> str:
        with CaptureQueriesContext(connection) as captured:
            assert leases.claim(str(job.pk), "owner") is not None
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"  # never the session's setting
        return captured[0]["sql"]

    assert "set_config('synchronous_commit', 'off', true)" in claim(unsent("test-noop"))
    with transaction.atomic():  # the caller's commit is the claim's: it must stay durable
        assert "synchronous_commit" not in claim(unsent("test-noop"))


@handler("test-fold-slow-step")
def slow_step(ctx: JobContext) -> None:
    ctx.step("slow", lambda: time.sleep(0.2))


def test_events_keep_the_time_they_happened_at_not_the_time_they_were_written():
    job = unsent("test-fold-slow-step")
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    started, succeeded = JobEvent.objects.filter(job=job).order_by("seq")
    step = JobStep.objects.get(job=job)
    assert step.started_at is not None and step.finished_at is not None
    # Both were written in the run's one closing statement, after the step.
    assert started.created_at <= step.started_at < step.finished_at <= succeeded.created_at


def test_a_hand_written_update_writes_what_the_orm_update_would():
    ours, theirs = (
        Job.objects.create(organization=default_organization(), job_type="x", lease_owner="me")
        for _ in range(2)
    )
    values = {
        "status": JobStatus.FAILED,
        "finished_at": timezone.now(),
        "result": {"text": "ünïcode", "n": [1, None]},
        "lease_expires_at": None,
        "error_message": 'it\'s "quoted"',
        "priority": 7,
    }
    sql, params = folded.update_statement(Job, {"pk": ours.pk, "lease_owner": "me"}, values)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount == 1
        cursor.execute(
            *folded.update_statement(Job, {"pk": ours.pk, "lease_owner": "else"}, values)
        )
        assert cursor.rowcount == 0  # every condition holds, or nothing is written
    Job.objects.filter(pk=theirs.pk, lease_owner="me").update(**values)
    fields = [
        f.attname
        for f in Job._meta.concrete_fields
        if f.attname not in ("id", "created_at", "updated_at")
    ]
    ours_row, theirs_row = (
        Job.objects.filter(pk=j.pk).values(*fields).get() for j in (ours, theirs)
    )
    assert ours_row == theirs_row
    assert Job.objects.get(pk=ours.pk).updated_at == ours.updated_at  # as .update(): untouched
    with pytest.raises(ValueError, match="NULL"):
        folded.update_statement(Job, {"pk": ours.pk, "lease_owner": None}, values)
    for refused in ({"priority": F("priority") + 1}, {"parent": theirs}, {}):
        with pytest.raises(ValueError):
            folded.update_statement(Job, {"pk": ours.pk}, refused)
