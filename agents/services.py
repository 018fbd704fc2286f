"""Agents: validated configuration, soft deletion, running them as jobs."""

from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from agents.models import Agent, AgentStatus
from agents.providers.registry import model_error, parameter_error
from agents.tools import known_entries, resolve_tool, tool_names
from core.errors import ApplicationError
from jobs.models import Job
from jobs.services import job_create

PARAMETER_RANGES: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.0, 1.0),
    "max_tokens": (int, 1, 200_000),
    "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
}
PERSONALITY_KEYS = {"traits", "tone", "behaviour", "language_style"}


class AgentInvalid(ApplicationError):
    """A configuration that does not hold; `fields` says what is wrong with each field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()), errors)


def parameter_errors(parameters: Any) -> list[str]:
    if not isinstance(parameters, dict):
        return ["must be a JSON object"]
    errors = []
    for name, value in parameters.items():
        if name == "stop":
            stops = [value] if isinstance(value, str) else value
            if (
                not isinstance(stops, list)
                or len(stops) > 4
                or not all(isinstance(s, str) for s in stops)
            ):
                errors.append("stop must be a string or a list of at most 4 strings")
            continue
        if name not in PARAMETER_RANGES:
            errors.append(
                f"unknown parameter {name!r}; known: {', '.join([*PARAMETER_RANGES, 'stop'])}"
            )
            continue
        kind, low, high = PARAMETER_RANGES[name]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not isinstance(value, int)):
            errors.append(f"{name} must be {'an integer' if kind is int else 'a number'}")
        elif not low <= value <= high:
            errors.append(f"{name} must be between {low:g} and {high:g}")
    return errors


def config_errors(
    fields: dict[str, Any], organization_id: int | None = None
) -> dict[str, list[str]]:
    """Field errors of an agent's configuration (only of the fields given). Lent tools
    ("workflow:<slug>") are checked against the organization's, when it is given."""
    errors: dict[str, list[str]] = {}
    if "provider" in fields or "model" in fields:
        problem = model_error(fields.get("provider", ""), fields.get("model", ""))
        if problem:
            errors["provider" if problem.startswith("unknown provider") else "model"] = [problem]
    if "tools" in fields:
        tools = fields["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            errors["tools"] = ["must be a list of tool names"]
        else:
            unknown = sorted(
                t
                for t in set(tools)
                if t not in tool_names()
                and (organization_id is None or resolve_tool(t, organization_id) is None)
            )
            if unknown:
                errors["tools"] = [
                    f"unknown tool(s) {', '.join(unknown)}; known: {known_entries()}"
                ]
    if "parameters" in fields and (problems := parameter_errors(fields["parameters"])):
        errors["parameters"] = problems
    elif (
        "parameters" in fields
        and "provider" in fields
        and (refused := parameter_error(fields["provider"], fields["parameters"]))
    ):
        errors["parameters"] = [refused]
    if "personality" in fields:
        persona = fields["personality"]
        if not isinstance(persona, dict) or set(persona) - PERSONALITY_KEYS:
            errors["personality"] = [f"an object with only {', '.join(sorted(PERSONALITY_KEYS))}"]
        elif "traits" in persona and not (
            isinstance(persona["traits"], list)
            and all(isinstance(t, str) for t in persona["traits"])
        ):
            errors["personality"] = ["traits must be a list of strings"]
    return errors


def _save(agent: Agent) -> Agent:
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError:
        raise AgentInvalid(
            {"name": ["an agent with this name exists in the organization"]}
        ) from None
    return agent


def agent_create(*, organization: Organization, created_by: User | None, **fields: Any) -> Agent:
    full = {
        "provider": Agent._meta.get_field("provider").get_default(),
        "model": Agent._meta.get_field("model").get_default(),
        **fields,
    }
    if errors := config_errors(full, organization.pk):
        raise AgentInvalid(errors)
    return _save(Agent(organization=organization, created_by=created_by, **full))


def agent_update(*, agent: Agent, **fields: Any) -> Agent:
    check = dict(fields)
    if fields.keys() & {"provider", "model", "parameters"}:  # checked together
        check.setdefault("provider", agent.provider)
        check.setdefault("model", agent.model)
        check.setdefault("parameters", agent.parameters)
    if errors := config_errors(check, agent.organization_id):
        raise AgentInvalid(errors)
    for name, value in fields.items():
        setattr(agent, name, value)
    return _save(agent)


def agent_delete(*, agent: Agent) -> None:
    """Soft delete: the agent's jobs and messages stay; its name may be used again."""
    agent.deleted_at = timezone.now()
    agent.status = AgentStatus.OFFLINE
    agent.save(update_fields=["deleted_at", "status", "updated_at"])


def agent_execute(
    *,
    agent: Agent,
    user: User | None,
    task: str,
    context: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    session_id: str = "",
    priority: int = 5,
    idempotency_key: str = "",
) -> Job:
    """Start an `agent-task` job for the agent (its `prepare` hook refuses a deleted
    or offline agent)."""
    job_input: dict[str, Any] = {"agent_id": agent.pk, "task": task}
    if context:
        job_input["context"] = context
    if max_tokens:
        job_input["max_tokens"] = max_tokens
    if session_id:
        job_input["session_id"] = session_id
    return job_create(
        job_type="agent-task",
        input=job_input,
        priority=priority,
        created_by=user,
        organization=agent.organization,
        idempotency_key=idempotency_key,
    )
