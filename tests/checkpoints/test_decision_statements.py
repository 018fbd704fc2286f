"""What a decision writes (its row, the checkpoint's status, the job's events, the
wake-up) is one statement on PostgreSQL, and the same rows one at a time elsewhere."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus
from checkpoints.selectors import resolution
from jobs.models import Job, JobEvent, JobStatus, JobStep, StepStatus
from jobs.runtime import append_event, folded, resolve_wait
from jobs.runtime.engine import run_job
from jobs.services import job_cancel, job_create, job_retry
from tests.factories import make_user
from tests.utils import wait_status

pytestmark = pytest.mark.usefixtures("local_runtime")


def paused(**input: object) -> tuple[Job, Checkpoint]:
    job = job_create(job_type="test-approval", input=dict(input), created_by=make_user("creator"))
    assert run_job(str(job.pk)) == JobStatus.WAITING
    return job, Checkpoint.objects.get(job=job, status=CheckpointStatus.PENDING)


def events(job: Job) -> list[tuple[int, str]]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", "kind"))


_NOT_WRITES = {"SELECT", "SAVEPOINT", "RELEASE"}  # the test's transaction: savepoints


@pytest.fixture(params=["folded", "portable"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "portable":  # as on SQLite: the same rows, one at a time
        monkeypatch.setattr(folded, "resolvable", lambda: False)
    return str(request.param)


@pytest.mark.django_db
def test_an_approval_writes_its_decision_status_events_and_wake_up(path):
    job, checkpoint = paused()
    before = events(job)
    alice = make_user("alice", approver=True)

    with CaptureQueriesContext(connection) as captured:
        decision = services.checkpoint_approve(checkpoint=checkpoint, user=alice)

    writes = [q["sql"] for q in captured if q["sql"].split()[0] not in _NOT_WRITES]
    if path == "folded":
        assert len(writes) == 1 and writes[0].startswith("WITH r0 AS (INSERT"), writes
        # One read: the job and the checkpoint locked together; no decisions to read.
        reads = [q["sql"] for q in captured if q["sql"].startswith("SELECT")]
        assert sum("FOR UPDATE" in read for read in reads) == 1, reads
        assert not any("checkpointdecision" in read for read in reads), reads
    else:
        # decision, status, the wait's step, event, wake-up, its event
        assert len(writes) == 6, writes
    stored = CheckpointDecision.objects.get(checkpoint=checkpoint)
    assert (stored.pk, stored.user, stored.verdict) == (decision.pk, alice, "approved")
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.APPROVED and checkpoint.decided_at
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.wait_reason == ""
    last = before[-1][0]
    assert events(job)[len(before) :] == [(last + 1, "checkpoint.decided"), (last + 2, "job.woken")]
    woken = JobEvent.objects.get(job=job, kind="job.woken")
    assert woken.data == {"reason": f"checkpoint {checkpoint.key} approved"}
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED


@pytest.mark.django_db
def test_a_settled_wait_resumes_from_its_step_without_reading_the_checkpoint(path):
    job, checkpoint = paused(payload={"n": 2}, required_approvals=2)
    services.checkpoint_approve(
        checkpoint=checkpoint, user=make_user("alice", approver=True), payload={"n": 3}
    )
    step = JobStep.objects.get(job=job, key="go")
    assert step.status == StepStatus.WAITING  # short of the quorum: still the poll's

    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("bob", approver=True))

    step.refresh_from_db()
    checkpoint.refresh_from_db()
    assert step.status == StepStatus.SUCCEEDED and step.finished_at == checkpoint.decided_at
    assert step.output == resolution(checkpoint)  # what the job's own poll would record
    assert step.output["decided_by"] == ["alice", "bob"] and step.output["edited"] is True
    with CaptureQueriesContext(connection) as captured:
        assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    sql = [q["sql"] for q in captured]
    assert [s for s in sql if "checkpoints_checkpoint" in s] == []  # no poll
    assert not any(s.startswith('UPDATE "agents_jobstep"') for s in sql)  # nor its write
    job.refresh_from_db()
    assert job.result == {"payload": {"n": 3}, "decided_by": ["alice", "bob"], "timed_out": False}


@pytest.mark.django_db
def test_the_wait_of_a_job_not_waiting_is_left_to_its_run(path):
    job, checkpoint = paused()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)  # a run is under way

    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("alice", approver=True))

    # Not woken, and its step not written over: the run's own poll reads the decision.
    assert JobStep.objects.get(job=job, key="go").status == StepStatus.WAITING
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


@pytest.mark.django_db
def test_a_checkpoint_asked_again_counts_only_the_decisions_since(path):
    job, checkpoint = paused(required_approvals=2)
    services.checkpoint_approve(
        checkpoint=checkpoint, user=make_user("ann", approver=True), payload={"n": 9}
    )
    # ann's decision was dated by a host whose clock runs five minutes ahead
    ahead = timezone.now() + timedelta(minutes=5)
    CheckpointDecision.objects.filter(checkpoint=checkpoint).update(created_at=ahead)
    job_cancel(job=job)  # while it waits: the checkpoint is cancelled, ann's edit kept
    job_retry(job=job)
    assert run_job(str(job.pk)) == JobStatus.WAITING  # asked again
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.PENDING

    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("bob", approver=True))
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.PENDING  # ann's approval no longer counts
    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("carl", approver=True))

    checkpoint.refresh_from_db()
    step = JobStep.objects.get(job=job, key="go")
    assert step.output == resolution(checkpoint)  # the poll's, from the stored rows
    assert (step.output["decided_by"], step.output["edited"]) == (["bob", "carl"], False)
    assert CheckpointDecision.objects.filter(checkpoint=checkpoint).count() == 3  # kept
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.result == {"payload": {"n": 1}, "decided_by": ["bob", "carl"], "timed_out": False}


@pytest.mark.django_db
def test_an_expired_checkpoint_settles_its_wait_with_its_on_timeout(path):
    job, checkpoint = paused(expires_in=60, on_timeout="approve")
    Checkpoint.objects.filter(pk=checkpoint.pk).update(expires_at=timezone.now())

    assert services.checkpoints_expire_due() == 1

    checkpoint.refresh_from_db()
    step = JobStep.objects.get(job=job, key="go")
    assert step.status == StepStatus.SUCCEEDED and step.output == resolution(checkpoint)
    assert step.output["reason"] == "expired; on_timeout=approve"
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.result == {"payload": {"n": 1}, "decided_by": [], "timed_out": True}


@pytest.mark.django_db
def test_an_approval_short_of_the_quorum_neither_settles_nor_wakes(path):
    job, checkpoint = paused(required_approvals=2)
    before = events(job)

    services.checkpoint_approve(checkpoint=checkpoint, user=make_user("alice", approver=True))

    assert CheckpointDecision.objects.filter(checkpoint=checkpoint).count() == 1
    checkpoint.refresh_from_db()
    job.refresh_from_db()
    assert (checkpoint.status, job.status) == (CheckpointStatus.PENDING, JobStatus.WAITING)
    assert [kind for _, kind in events(job)[len(before) :]] == ["checkpoint.approval_recorded"]


@pytest.mark.django_db
def test_a_job_no_longer_waiting_is_not_woken_and_gets_no_wake_event(path):
    job, _ = paused()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    before = events(job)

    with transaction.atomic():
        assert resolve_wait(str(job.pk), events=[("test.note", {})], wake="late") is False

    assert [kind for _, kind in events(job)[len(before) :]] == ["test.note"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_an_event_number_taken_meanwhile_neither_deadlocks_nor_reorders_the_events(worker):
    """Another writer takes the job's next event number and commits only once the decision
    waits on it. Its commit checks the event's foreign key (KEY SHARE on the job's row),
    which the decision's job lock must not block (a deadlock, with FOR UPDATE); the
    decision's events are then written again, in order, after that one."""
    job = job_create(job_type="test-approval", created_by=make_user("creator"))
    wait_status(job.pk, JobStatus.WAITING)
    checkpoint = Checkpoint.objects.get(job=job)
    alice = make_user("alice", approver=True)
    taken, go, failures = threading.Event(), threading.Event(), []
    decider_pid: list[int] = []

    def writer() -> None:
        try:
            with transaction.atomic():
                append_event(str(job.pk), "test.meanwhile", {})
                taken.set()
                assert go.wait(30)
        except Exception as error:  # reported by the test, not lost in the thread
            failures.append(error)
        finally:
            connections.close_all()

    def decider() -> None:
        try:
            assert taken.wait(30)
            connection.ensure_connection()
            decider_pid.append(connection.connection.info.backend_pid)
            services.checkpoint_approve(checkpoint=checkpoint, user=alice)
        except Exception as error:
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer), threading.Thread(target=decider)]
    for thread in threads:
        thread.start()
    try:  # the decision waits on the writer's uncommitted number: then let it commit
        with connection.cursor() as cursor:
            for _ in range(300):
                if decider_pid:
                    cursor.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                        decider_pid,
                    )
                    row = cursor.fetchone()
                    if row and row[0] == "Lock":
                        break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the decision never waited on the taken number")
    finally:
        go.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures

    kinds = [kind for _, kind in events(job)]
    assert kinds[-3:] == ["test.meanwhile", "checkpoint.decided", "job.woken"]
    seqs = [seq for seq, _ in events(job)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert Checkpoint.objects.get(pk=checkpoint.pk).status == CheckpointStatus.APPROVED
    wait_status(job.pk, JobStatus.SUCCEEDED)  # woken, and run on by the worker


@pytest.mark.django_db
def test_a_decision_and_its_checkpoint_and_events_share_one_moment():
    job, checkpoint = paused()
    decision = services.checkpoint_approve(
        checkpoint=checkpoint, user=make_user("alice", approver=True)
    )
    checkpoint.refresh_from_db()
    stored = CheckpointDecision.objects.get(pk=decision.pk)
    stamped = set(
        JobEvent.objects.filter(job=job, kind__in=["checkpoint.decided", "job.woken"]).values_list(
            "created_at", flat=True
        )
    )
    assert stamped == {stored.created_at} == {checkpoint.decided_at}


@pytest.mark.django_db
def test_resolve_wait_refuses_what_one_statement_cannot_write(path):
    job, checkpoint = paused()
    with transaction.atomic():  # nothing to write: nothing done
        assert resolve_wait(str(job.pk)) is False
        with pytest.raises(ValueError, match="new rows"):
            resolve_wait(str(job.pk), rows=[checkpoint])
        with pytest.raises(ValueError, match="one update"):
            resolve_wait(str(job.pk), updates=[(Job, {"pk": job.pk}, {"priority": 1})], wake="x")
        # Without a wake-up the job's row is the caller's to update; no events is fine.
        assert resolve_wait(str(job.pk), updates=[(Job, {"pk": job.pk}, {"priority": 1})]) is False
    assert Job.objects.get(pk=job.pk).priority == 1
