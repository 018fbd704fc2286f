"""Workflows: saving definitions as versions, starting runs, triggers, schedules and
conversations. The API, the admin, the command line and the nodes all call these."""

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import Organization
from agents.models import Agent
from agents.services import agent_create
from core.errors import ApplicationError, Conflict
from core.schemas import MAX_JSON_DEPTH, json_problem, validation_errors
from jobs.models import Job, JobStatus
from jobs.runtime import JobError
from jobs.services import job_create
from workflows import metrics
from workflows.definition import check_definition, checksum, child_lists
from workflows.models import (
    Event,
    Trigger,
    TriggerRule,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)

logger = logging.getLogger(__name__)

HISTORY_MESSAGES = 20  # of a session, given to a message-triggered run

# Set while this app creates a run's or a branch's job: their job types refuse to be
# created any other way (POST /api/v1/jobs/ would skip the checks made here).
creating_run_job: ContextVar[bool] = ContextVar("creating_run_job", default=False)


@contextmanager
def run_job_creation() -> Iterator[None]:
    token = creating_run_job.set(True)
    try:
        yield
    finally:
        creating_run_job.reset(token)


class WorkflowInvalid(ApplicationError):
    """A definition (or a workflow's fields) that does not hold, with field paths."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        first = next(iter(errors.items()), ("definition", ["invalid"]))
        super().__init__(f"invalid workflow: {first[0]}: {first[1][0]}", errors)


def _references(nodes: list[Any]) -> Iterator[str]:
    """The slugs of the workflows a node list runs (`workflow` nodes, at any depth)."""
    for node in nodes:
        if not isinstance(node, dict):
            continue
        if node.get("type") == "workflow":
            yield str((node.get("config") or {}).get("workflow", ""))
        for _, inner in child_lists(node):
            yield from _references(inner)


def _cycle(organization: Organization, slug: str, definition: dict[str, Any]) -> list[str]:
    """A chain of `workflow` nodes leading from `slug` back to itself, or []."""
    graph = {
        other: set(_references([*d.get("nodes", []), *d.get("on_failure", [])]))
        for other, d in Workflow.objects.filter(organization=organization)
        .exclude(current_version=None)
        .values_list("slug", "current_version__definition")
    }
    graph[slug] = set(
        _references([*definition.get("nodes", []), *definition.get("on_failure", [])])
    )
    path: list[str] = []

    def visit(node: str) -> bool:
        if node in path:
            return node == slug
        path.append(node)
        if any(visit(nxt) for nxt in sorted(graph.get(node, ()))):
            return True
        path.pop()
        return False

    return [*path, slug] if visit(slug) else []


def definition_errors(
    *,
    organization: Organization,
    definition: Any,
    slug: str | None = None,
    bringing_agents: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """Every problem of `definition` for a workflow `slug` of `organization`, by path;
    agents named in `bringing_agents` count as existing (an import file creates them)."""
    checked = check_definition(definition)
    errors = dict(checked.errors)
    agents = Agent.objects.alive().filter(organization=organization)
    for path, reference in checked.agents:
        if reference in bringing_agents:
            continue
        found = (
            agents.filter(pk=reference)
            if isinstance(reference, int)
            else agents.filter(name=reference)
        )
        if not found.exists():
            errors.setdefault(path, []).append(f"no agent {reference!r} in this organization")
    known = set(Workflow.objects.filter(organization=organization).values_list("slug", flat=True))
    for path, other in checked.workflows:
        if other not in known and other != slug:
            errors.setdefault(path, []).append(f"no workflow {other!r} in this organization")
    if slug and not errors and (cycle := _cycle(organization, slug, definition)):
        errors.setdefault("nodes", []).append("workflow nodes make a cycle: " + " → ".join(cycle))
    return errors


def _check(organization: Organization, definition: Any, slug: str) -> None:
    if errors := definition_errors(organization=organization, definition=definition, slug=slug):
        raise WorkflowInvalid(errors)


def _new_version(
    workflow: Workflow, definition: dict[str, Any], user: User | None
) -> WorkflowVersion:
    number = (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=number,
        definition=definition,
        checksum=checksum(definition),
        created_by=user,
    )
    workflow.current_version = version
    workflow.save(update_fields=["current_version", "updated_at"])
    _sync_triggers(workflow, version)
    return version


@transaction.atomic
def workflow_create(
    *,
    organization: Organization,
    slug: str,
    name: str,
    definition: dict[str, Any],
    description: str = "",
    created_by: User | None = None,
) -> Workflow:
    """A workflow with its first version."""
    _check(organization, definition, slug)
    try:
        with transaction.atomic():
            workflow = Workflow.objects.create(
                organization=organization,
                slug=slug,
                name=name,
                description=description,
                created_by=created_by,
            )
    except IntegrityError:
        raise WorkflowInvalid(
            {"slug": [f"a workflow {slug!r} exists in this organization"]}
        ) from None
    _new_version(workflow, definition, created_by)
    return workflow


@transaction.atomic
def workflow_save(
    *, workflow: Workflow, definition: dict[str, Any], created_by: User | None = None
) -> WorkflowVersion:
    """Save a definition as the workflow's new current version (runs in flight finish on
    theirs). The same definition again keeps the current version."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    _check(workflow.organization, definition, workflow.slug)
    current = workflow.current_version
    if current is not None and current.checksum == checksum(definition):
        return current
    return _new_version(workflow, definition, created_by)


# What an imported file may say about an agent it needs (the rest keeps its defaults).
IMPORTED_AGENT_FIELDS = frozenset(
    {"name", "description", "provider", "model", "parameters", "instructions", "personality"}
    | {"tools", "max_turns", "max_concurrency"}
)


@transaction.atomic
def workflow_import(
    *, organization: Organization, data: dict[str, Any], created_by: User | None = None
) -> tuple[Workflow, bool, list[str]]:
    """Create the workflow of an exported file, or save its definition as a new version;
    first create the agents the file lists that the organization does not have (by name;
    agents that exist are left as they are). All or nothing. Returns (workflow, created,
    names of the agents created)."""
    errors: dict[str, list[str]] = {}
    for field in ("slug", "name"):
        if not isinstance(data.get(field), str) or not data[field].strip():
            errors[field] = ["required: a non-empty string"]
    if not isinstance(data.get("definition"), dict):
        errors["definition"] = ["required: a definition object"]
    agents = data.get("agents", [])
    if not isinstance(agents, list) or not all(isinstance(a, dict) for a in agents):
        errors["agents"] = ["must be a list of agent objects"]
        agents = []
    for index, agent in enumerate(agents):
        if unknown := sorted(set(agent) - IMPORTED_AGENT_FIELDS):
            errors[f"agents.{index}"] = [f"unknown fields: {', '.join(unknown)}"]
        elif not isinstance(agent.get("name"), str) or not agent["name"].strip():
            errors[f"agents.{index}.name"] = ["required: a non-empty string"]
    if errors:
        raise WorkflowInvalid(errors)
    made = []
    for index, fields in enumerate(agents):
        if Agent.objects.alive().filter(organization=organization, name=fields["name"]).exists():
            continue
        try:
            agent_create(organization=organization, created_by=created_by, **fields)
        except ApplicationError as exc:
            raise WorkflowInvalid(
                {f"agents.{index}.{path}": problems for path, problems in exc.fields.items()}
                or {f"agents.{index}": [str(exc)]}
            ) from None
        made.append(fields["name"])
    workflow = Workflow.objects.filter(organization=organization, slug=data["slug"]).first()
    if workflow is None:
        workflow = workflow_create(
            organization=organization,
            slug=data["slug"],
            name=data["name"],
            description=data.get("description", ""),
            definition=data["definition"],
            created_by=created_by,
        )
        return workflow, True, made
    workflow_save(workflow=workflow, definition=data["definition"], created_by=created_by)
    workflow.refresh_from_db()
    return workflow, False, made


@transaction.atomic
def workflow_update(*, workflow: Workflow, **fields: Any) -> Workflow:
    """Name, description, active."""
    unknown = set(fields) - {"name", "description", "active"}
    if unknown:
        raise WorkflowInvalid({name: ["cannot be changed here"] for name in sorted(unknown)})
    for name, value in fields.items():
        setattr(workflow, name, value)
    workflow.save()
    return workflow


@transaction.atomic
def workflow_set_version(*, workflow: Workflow, number: int) -> Workflow:
    """Make an earlier (or later) version current again: a rollback."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    version = workflow.versions.filter(number=number).first()
    if version is None:
        raise WorkflowInvalid({"version": [f"no version {number} of {workflow.slug}"]})
    # It was valid when saved; what it names (agents, workflows) may have changed since.
    _check(workflow.organization, version.definition, workflow.slug)
    workflow.current_version = version
    workflow.save(update_fields=["current_version", "updated_at"])
    _sync_triggers(workflow, version)
    return workflow


# --- triggers and schedules ------------------------------------------------------------


def next_fire(cron: str, zone: str, after: datetime) -> datetime:
    """The first time after `after` that `cron` names, in time zone `zone` (DST-aware)."""
    local = after.astimezone(ZoneInfo(zone or "UTC"))
    return croniter(cron, local).get_next(datetime)


def _sync_triggers(workflow: Workflow, version: WorkflowVersion) -> None:
    """The event and schedule rules of the current version, as rows beat and events use."""
    workflow.triggers.all().delete()
    now = timezone.now()
    for trigger in version.definition.get("triggers", []):
        kind = trigger["type"]
        rule = TriggerRule(
            workflow=workflow,
            kind=kind,
            event_name=trigger.get("event", ""),
            filter=trigger.get("filter", ""),
            cron=trigger.get("cron", ""),
            timezone=trigger.get("timezone", ""),
        )
        if kind == Trigger.SCHEDULE:
            rule.next_fire_at = next_fire(rule.cron, rule.timezone, now)
        rule.save()


def schedules_fire(*, now: datetime | None = None, limit: int = 100) -> int:
    """Start the runs of schedules that are due, each in a transaction of its own.

    A rule is locked (others skip it) and its slot is the run's idempotency key, so two
    beats, a beat restart or a re-sent message never start a slot twice. Missed slots
    (beat was down): the first missed one fires once, then the schedule goes on from the
    next slot after now; the others are skipped."""
    now = now or timezone.now()
    due = list(
        TriggerRule.objects.filter(
            kind=Trigger.SCHEDULE, next_fire_at__lte=now, workflow__active=True
        )
        .order_by("next_fire_at")
        .values_list("pk", flat=True)[:limit]
    )
    fired = 0
    for pk in due:
        with transaction.atomic():
            rule = (
                TriggerRule.objects.select_for_update(skip_locked=True)
                .select_related("workflow")
                .filter(pk=pk, next_fire_at__lte=now)
                .first()
            )
            if rule is None or rule.next_fire_at is None:
                continue
            slot = rule.next_fire_at
            try:
                with transaction.atomic():  # whatever goes wrong, the slot passes
                    workflow_run_start(
                        workflow=rule.workflow,
                        input={},
                        trigger=Trigger.SCHEDULE,
                        idempotency_key=f"schedule:{rule.pk}:{slot.isoformat()}",
                    )
                fired += 1
            except ApplicationError as exc:  # bad input for the schedule: said, not retried
                logger.warning("schedule of %s did not start a run: %s", rule.workflow.slug, exc)
            except Exception:  # one broken rule must not stop every other schedule
                logger.exception("schedule of %s failed to start a run", rule.workflow.slug)
            rule.last_fired_at = slot
            rule.next_fire_at = next_fire(rule.cron, rule.timezone, now)
            rule.save(update_fields=["last_fired_at", "next_fire_at"])
    return fired


# --- runs ----------------------------------------------------------------------------------


def input_errors(version: WorkflowVersion, data: Any) -> dict[str, list[str]]:
    if not isinstance(data, dict):
        return {"input": ["Expected a JSON object."]}
    if problem := json_problem(data, MAX_JSON_DEPTH):
        return {"input": [problem]}
    schema = version.definition.get("input_schema")
    if not schema:
        return {}
    errors: dict[str, list[str]] = {}
    for where, message in validation_errors(schema, data):
        errors.setdefault(".".join(part for part in ("input", where) if part), []).append(message)
    return errors


def _inherited_depth(parent: Job | None) -> int:
    """A run started from another run (a `workflow` node, an agent's tool call, at any
    remove) is as deep in an event chain as the nearest run above it."""
    seen = 0
    while parent is not None and seen < 50:
        if parent.job_type == "workflow":
            return int(parent.input.get("depth") or 0)
        if parent.job_type == "workflow-branch":
            return int(parent.input.get("scope", {}).get("run", {}).get("depth") or 0)
        parent = parent.parent
        seen += 1
    return 0


KEY_LENGTH = 200  # Job.idempotency_key's max_length


def run_key(workflow: Workflow, idempotency_key: str) -> str:
    """A run's job idempotency key: the caller's, within the workflow (the same key on
    another workflow, or on a plain job, is another request)."""
    if not idempotency_key:
        return ""
    scoped = f"workflow:{workflow.pk}:{idempotency_key}"
    if len(scoped) <= KEY_LENGTH:
        return scoped
    return f"workflow:{workflow.pk}:sha256:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


@transaction.atomic
def workflow_run_start(
    *,
    workflow: Workflow,
    input: dict[str, Any],
    created_by: User | None = None,
    trigger: str = Trigger.API,
    event: Event | None = None,
    session_id: str = "",
    parent: Job | None = None,
    idempotency_key: str = "",
    priority: int = 5,
) -> WorkflowRun:
    """Start a run on the workflow's current version (which it keeps to its end)."""
    # As it is now, not as the caller's copy remembers it (an edit may have come since).
    workflow = Workflow.objects.select_related("current_version", "organization").get(
        pk=workflow.pk
    )
    version = workflow.current_version
    if version is None:
        raise Conflict(f"workflow {workflow.slug} has no version")
    if not workflow.active:
        raise Conflict(f"workflow {workflow.slug} is inactive")
    if errors := input_errors(version, input):
        raise JobError(f"invalid input for workflow {workflow.slug}", errors)
    job_input = {
        "workflow": workflow.pk,
        "version": version.pk,
        "checksum": version.checksum,
        "input": input,
        "trigger": trigger,
        "event": event.payload() if event else None,
        # how deep in a chain of emitted events the run is (see events.MAX_EVENT_DEPTH)
        "depth": event.depth if event else _inherited_depth(parent),
        "session_id": session_id,
    }
    with run_job_creation():
        job = job_create(
            job_type="workflow",
            input=job_input,
            created_by=created_by,
            organization=workflow.organization,
            parent=parent,
            idempotency_key=run_key(workflow, idempotency_key),
            priority=priority,
        )
    run, created = WorkflowRun.objects.get_or_create(
        job=job,
        defaults={
            "workflow": workflow,
            "version": version,
            "organization": workflow.organization,
            "trigger": trigger,
            "event": event,
            "session_id": session_id,
        },
    )
    if created:
        metrics.run_counted(workflow.slug, "started")
    return run


def session_history(workflow: Workflow, session_id: str) -> list[dict[str, str]]:
    """The session's last HISTORY_MESSAGES turns, oldest first: each earlier message run
    gives the user's message and, once it has succeeded, its output as the reply. Read
    from the runs themselves, so a reply is there as soon as its run has ended."""
    runs = (
        WorkflowRun.objects.filter(
            workflow=workflow, session_id=session_id, trigger=Trigger.MESSAGE
        )
        .select_related("job")
        .order_by("-created_at")[:HISTORY_MESSAGES]
    )
    turns: list[dict[str, str]] = []
    for run in reversed(runs):
        turns.append({"role": "user", "content": str(run.job.input["input"]["message"])})
        if run.job.status == JobStatus.SUCCEEDED:
            output = (run.job.result or {}).get("output")
            reply = output if isinstance(output, str) else json.dumps(output)
            turns.append({"role": "assistant", "content": reply})
    return turns[-HISTORY_MESSAGES:]


@transaction.atomic
def workflow_message(
    *, workflow: Workflow, session_id: str, text: str, created_by: User | None = None
) -> WorkflowRun:
    """A chat message to a message-triggered workflow: a run whose input is the message
    and the session's recent history; its final output is the reply."""
    if not workflow.triggers.filter(kind=Trigger.MESSAGE).exists():
        raise Conflict(f"workflow {workflow.slug} has no message trigger")
    return workflow_run_start(
        workflow=workflow,
        created_by=created_by,
        trigger=Trigger.MESSAGE,
        session_id=session_id,
        input={
            "message": text,
            "session_id": session_id,
            "history": session_history(workflow, session_id),
        },
    )


def run_ended(sender: Any, job_id: str, status: str, job_type: str, **kwargs: Any) -> None:
    """`job_finished` receiver: count a run's end."""
    if job_type != "workflow":
        return
    slug = (
        WorkflowRun.objects.filter(job_id=job_id).values_list("workflow__slug", flat=True).first()
    )
    if slug is not None:
        metrics.run_counted(slug, status)
