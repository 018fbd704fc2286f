"""An agent's concurrency cap and status, kept by the runs of its jobs.

A run of an agent's job is admitted after it claims its lease and before the
handler starts. Admission and release lock the agent's row, so they happen one at
a time per agent: the count of running jobs read under the lock is exact, and two
runs cannot both take the last slot. A run that finds no free slot parks: its job
waits (reason `agent concurrency`) holding no worker. Every run of that agent that
ends queues parked jobs again, most urgent and oldest first, one per slot that no
running or queued job will take. A parked job is also re-checked after
COUNTERSIGN_AGENT_SLOT_RECHECK_SECONDS, for a run that died without releasing.

The agent's status follows its runs: `busy` while any runs, then `idle`, or
`error` if the run that ended last failed. `offline` is a person's choice and is
never changed here.
"""

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, AgentStatus
from jobs.models import Job, JobStatus
from jobs.runtime.queue import wake_at_after

if TYPE_CHECKING:
    from jobs.runtime.engine import Run

PARKED = "agent concurrency"


def _running_others(agent_id: int, job_id: uuid.UUID) -> int:
    return (Job.objects.filter(agent_id=agent_id, status=JobStatus.RUNNING,
                               lease_expires_at__gt=timezone.now())
            .exclude(pk=job_id).count())


def _lock_agent(agent_id: int) -> int | None:
    """Lock the agent's row for this transaction; its cap (None: no such agent)."""
    return (Agent.objects.select_for_update().filter(pk=agent_id)
            .values_list("max_concurrency", flat=True).first())


def admit(run: "Run") -> bool:
    """May this run go on? If not, its job is parked (and committed) before returning."""
    job = run.job
    if job.agent_id is None:
        return True
    with transaction.atomic():
        cap = _lock_agent(job.agent_id)
        if cap is None:  # the agent row is gone; the handler reports it
            return True
        if cap and _running_others(job.agent_id, job.pk) >= cap:
            run.mark_waiting(PARKED, wake_at_after(settings.COUNTERSIGN_AGENT_SLOT_RECHECK_SECONDS))
            return False
        Agent.objects.filter(pk=job.agent_id, status__in=[AgentStatus.IDLE, AgentStatus.ERROR]
                             ).update(status=AgentStatus.BUSY)
    return True


def release(job: Job, outcome: str) -> None:
    """After a run of an agent's job ends (finished, waiting, retrying, failed before
    its handler): set the agent's status and hand the free slots to parked jobs."""
    if job.agent_id is None:
        return
    with transaction.atomic():
        cap = _lock_agent(job.agent_id)
        if cap is None:
            return
        running = _running_others(job.agent_id, job.pk)
        if running:
            status = AgentStatus.BUSY
        else:
            status = AgentStatus.ERROR if outcome == JobStatus.FAILED else AgentStatus.IDLE
        Agent.objects.filter(pk=job.agent_id).exclude(status=AgentStatus.OFFLINE
                                                      ).update(status=status)
        if cap:  # queued jobs (woken ones included) will take slots of their own
            queued = Job.objects.filter(agent_id=job.agent_id, status=JobStatus.QUEUED).count()
            if running + queued < cap:
                _wake_parked(job.agent_id, cap - running - queued)


def _wake_parked(agent_id: int, free: int) -> None:
    """Queue the most urgent, oldest parked jobs, one per free slot. Queued, they are
    no longer parked, so the next release picks the ones after them."""
    from jobs.services import wake_job

    parked = (Job.objects.filter(agent_id=agent_id, status=JobStatus.WAITING, wait_reason=PARKED)
              .order_by("-priority", "created_at").values_list("pk", flat=True)[:free])
    for pk in parked:
        wake_job(job_id=str(pk), reason="an agent slot is free")
