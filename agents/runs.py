"""Where agents meet the runtime, which knows nothing of them.

- An agent's jobs share the concurrency key "agent:<id>"; its `max_concurrency` is the
  key's limit (registered when the app starts).
- A job type that runs as an agent (agent-task, code-generation) names it in
  `input.agent_id`; `agent_job_options` is its `prepare` hook: the agent must be the
  organization's, not deleted, not offline, and the job gets the agent's key, however
  the job was made (the jobs API, the agents API, `run_job`, the command line).
- The agent's `status` follows its runs: `busy` while any runs, then `idle`, or
  `error` if the run that ended last failed. `offline` is a person's choice and is
  never changed here. The runtime's `run_started`/`run_ended` signals come under the
  key's lock, so the count of other runs they carry is exact.
"""

from typing import Any

from accounts.models import Organization
from agents.models import Agent, AgentStatus
from jobs.models import Job
from jobs.runtime import JobError, JobOptions, RunOutcome

PREFIX = "agent"


def agent_key(agent_id: int) -> str:
    return f"{PREFIX}:{agent_id}"


def agent_id_of(key: str) -> int | None:
    prefix, _, rest = key.partition(":")
    return int(rest) if prefix == PREFIX and rest.isdecimal() else None


def agent_limit(key: str) -> int | None:
    """The key's limit: the agent's max_concurrency (0: none); None if it is gone."""
    agent_id = agent_id_of(key)
    if agent_id is None:
        return None
    return Agent.objects.filter(pk=agent_id).values_list("max_concurrency", flat=True).first()


def agent_job_options(input: dict[str, Any], organization: Organization) -> JobOptions:
    """`prepare` hook of the job types an agent runs: refuse an agent that cannot run."""
    agent_id = input.get("agent_id")
    if agent_id is None:
        return JobOptions()
    if not isinstance(agent_id, int) or isinstance(agent_id, bool):
        raise JobError(
            "agent_id must be an agent's id (an integer)", {"input.agent_id": ["An integer."]}
        )
    agent = Agent.objects.filter(pk=agent_id, organization=organization).first()
    if agent is None:
        raise JobError(
            f"agent {agent_id} does not exist in this organization",
            {"input.agent_id": ["No such agent in your organization."]},
        )
    if agent.deleted_at is not None:
        raise JobError(f"agent {agent.name!r} was deleted")
    if agent.status == AgentStatus.OFFLINE:
        raise JobError(f"agent {agent.name!r} is offline; set it idle to run it")
    return JobOptions(concurrency_key=agent_key(agent.pk))


def on_run_started(sender: Any, job: Job, **kwargs: Any) -> None:
    agent_id = agent_id_of(job.concurrency_key)
    if agent_id is not None:
        Agent.objects.filter(pk=agent_id, status__in=[AgentStatus.IDLE, AgentStatus.ERROR]).update(
            status=AgentStatus.BUSY
        )


def on_run_ended(
    sender: Any, job: Job, outcome: RunOutcome, running_others: int, **kwargs: Any
) -> None:
    agent_id = agent_id_of(job.concurrency_key)
    if agent_id is None:
        return
    if running_others:
        status = AgentStatus.BUSY
    else:
        status = AgentStatus.ERROR if outcome == RunOutcome.FAILED else AgentStatus.IDLE
    Agent.objects.filter(pk=agent_id).exclude(status=AgentStatus.OFFLINE).update(status=status)
