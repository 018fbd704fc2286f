"""An agent's concurrency cap and status, kept by its runs (in-process runs here; the
worker test in test_agent_worker.py runs them on several real pool slots)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Organization
from agents.models import Agent, AgentStatus
from agents.services import agent_create, agent_execute
from jobs.models import PARKED, Job, JobEvent, JobStatus
from jobs.runtime import RunOutcome
from jobs.runtime.engine import run_job
from jobs.services import JobError, job_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def occupy_slot(agent: Agent) -> Job:
    """A job of the agent that another worker is running now."""
    job = agent_execute(agent=agent, user=None, task="long")
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        lease_owner="elsewhere",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    return job


def test_a_run_past_the_cap_parks_and_the_freed_slot_wakes_it(acme):
    agent = agent_create(organization=acme, created_by=None, name="solo", max_concurrency=1)
    busy = occupy_slot(agent)
    job = agent_execute(agent=agent, user=None, task="wait your turn")

    assert run_job(str(job.pk)) == "parked"
    job.refresh_from_db()
    assert (job.status, job.wait_reason, job.lease_owner) == (JobStatus.WAITING, PARKED, "")
    assert job.wake_at > timezone.now() + timedelta(seconds=20)  # the fallback re-check
    assert job.attempts == 1  # parking costs no attempt
    assert not job.steps.exists()

    # The running job ends: its release hands the slot to the parked job.
    Job.objects.filter(pk=busy.pk).update(status=JobStatus.SUCCEEDED, lease_owner="")
    from jobs.runtime.concurrency import release

    release(busy, RunOutcome.SUCCEEDED)
    job.refresh_from_db()
    assert (job.status, job.wait_reason) == (JobStatus.QUEUED, "")
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    kinds = list(
        JobEvent.objects.filter(job=job)
        .exclude(kind="llm.delta")
        .order_by("seq")
        .values_list("kind", flat=True)
    )
    assert kinds == ["job.queued", "job.waiting", "job.woken", "job.started", "job.succeeded"]


def test_each_free_slot_wakes_its_own_parked_job(acme):
    agent = agent_create(organization=acme, created_by=None, name="pair", max_concurrency=2)
    first, second = occupy_slot(agent), occupy_slot(agent)
    parked = [agent_execute(agent=agent, user=None, task=f"p{n}") for n in range(3)]
    assert [run_job(str(job.pk)) for job in parked] == ["parked"] * 3

    from jobs.runtime.concurrency import release

    for busy in (first, second):  # two slots free, one after the other
        Job.objects.filter(pk=busy.pk).update(status=JobStatus.SUCCEEDED, lease_owner="")
        release(busy, RunOutcome.SUCCEEDED)
    statuses = [Job.objects.get(pk=job.pk).status for job in parked]
    assert statuses == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.WAITING]  # oldest first


def test_a_run_that_ends_before_its_handler_still_frees_the_agent(acme):
    agent = agent_create(organization=acme, created_by=None, name="taken-over", max_concurrency=1)
    job = agent_execute(agent=agent, user=None, task="x")
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # cancelled while queued
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.BUSY)
    assert run_job(str(job.pk)) == JobStatus.CANCELLED
    agent.refresh_from_db()
    assert agent.status == AgentStatus.IDLE


def test_no_cap_means_no_parking_and_a_dead_run_holds_no_slot(acme):
    free = agent_create(organization=acme, created_by=None, name="free")
    occupy_slot(free)
    assert run_job(str(agent_execute(agent=free, user=None, task="go").pk)) == JobStatus.SUCCEEDED

    capped = agent_create(organization=acme, created_by=None, name="capped", max_concurrency=1)
    dead = occupy_slot(capped)
    Job.objects.filter(pk=dead.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run_job(str(agent_execute(agent=capped, user=None, task="go").pk)) == JobStatus.SUCCEEDED


def test_the_status_follows_the_runs(acme):
    agent = agent_create(organization=acme, created_by=None, name="worker")
    ok = agent_execute(agent=agent, user=None, task="fine")
    assert run_job(str(ok.pk)) == JobStatus.SUCCEEDED
    agent.refresh_from_db()
    assert agent.status == AgentStatus.IDLE

    other = occupy_slot(agent)  # still running when the next run ends
    assert (
        run_job(str(agent_execute(agent=agent, user=None, task="fine").pk)) == JobStatus.SUCCEEDED
    )
    agent.refresh_from_db()
    assert agent.status == AgentStatus.BUSY
    Job.objects.filter(pk=other.pk).update(status=JobStatus.CANCELLED, lease_owner="")

    failing = agent_execute(agent=agent, user=None, task="fine")
    Agent.objects.filter(pk=agent.pk).update(deleted_at=timezone.now())  # the run fails
    assert run_job(str(failing.pk)) == JobStatus.FAILED
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ERROR

    Agent.objects.filter(pk=agent.pk).update(deleted_at=None, status=AgentStatus.IDLE)
    agent.refresh_from_db()
    queued_before = agent_execute(agent=agent, user=None, task="x")
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.OFFLINE)
    assert run_job(str(queued_before.pk)) == JobStatus.SUCCEEDED
    agent.refresh_from_db()
    assert agent.status == AgentStatus.OFFLINE  # a person's choice stays


def test_an_agent_task_made_by_hand_is_still_the_agents_job(acme):
    """Through the jobs API or run_job, input.agent_id alone names the agent: its cap
    and status apply, and an offline or unknown agent is refused."""
    agent = agent_create(organization=acme, created_by=None, name="solo", max_concurrency=1)
    occupy_slot(agent)
    by_hand = job_create(
        job_type="agent-task", organization=acme, input={"agent_id": agent.pk, "task": "x"}
    )
    assert by_hand.concurrency_key == f"agent:{agent.pk}"
    assert run_job(str(by_hand.pk)) == "parked"

    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.OFFLINE)
    with pytest.raises(JobError, match="is offline"):
        job_create(
            job_type="agent-task", organization=acme, input={"agent_id": agent.pk, "task": "x"}
        )
    other = Organization.objects.create(name="Globex", slug="globex")
    with pytest.raises(JobError, match="does not exist in this organization"):
        job_create(
            job_type="agent-task", organization=other, input={"agent_id": agent.pk, "task": "x"}
        )


def test_jobs_nest_only_so_deep(acme, settings):
    settings.COUNTERSIGN_MAX_JOB_DEPTH = 2
    top = job_create(job_type="simple-task", organization=acme)
    child = job_create(job_type="simple-task", parent=top)
    grandchild = job_create(job_type="simple-task", parent=child)
    with pytest.raises(JobError, match="at most 2 deep"):
        job_create(job_type="simple-task", parent=grandchild)

    agent = agent_create(organization=acme, created_by=None, name="boss", tools=["run_job"])
    deep = job_create(
        job_type="agent-task",
        parent=child,
        input={
            "agent_id": agent.pk,
            "task": 'Delegate.\n/tool run_job {"job_type": "simple-task"}',
        },
    )
    assert run_job(str(deep.pk)) == JobStatus.SUCCEEDED
    deep.refresh_from_db()
    assert "jobs may nest at most 2 deep" in deep.result["answer"]  # told to the model
    assert not deep.children.exists()
