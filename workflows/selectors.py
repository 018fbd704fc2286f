"""Reads of workflows, runs and events, and the per-node view of a run.

The per-node view comes from the run's steps and its branches' (one query), read
against the pinned version's definition: a node's record step says how it ended; its
sub-steps (`<key>:wait`, `<key>:start`, …) say whether it waits or runs. No second
source of truth."""

from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStep, StepStatus
from workflows.definition import NODE_TYPES
from workflows.models import Event, Workflow, WorkflowRun


def workflows_of(organization: Organization | None) -> QuerySet[Workflow]:
    if organization is None:
        return Workflow.objects.none()
    return Workflow.objects.filter(organization=organization).select_related("current_version")


def runs_of(organization: Organization | None) -> QuerySet[WorkflowRun]:
    if organization is None:
        return WorkflowRun.objects.none()
    return WorkflowRun.objects.filter(organization=organization).select_related(
        "job", "workflow", "version"
    )


def events_of(organization: Organization | None) -> QuerySet[Event]:
    if organization is None:
        return Event.objects.none()
    return Event.objects.filter(organization=organization)


class _Steps:
    """A job's steps by key, and which branch jobs hold which steps."""

    def __init__(self, steps: list[JobStep], root: Any) -> None:
        self.by_job: dict[str, dict[str, JobStep]] = {}
        for step in steps:
            self.by_job.setdefault(str(step.job_id), {})[step.key] = step
        self.root = str(root)

    def of(self, job_id: str) -> dict[str, JobStep]:
        return self.by_job.get(str(job_id), {})


def run_jobs(root: Any, *, branches_only: bool = True) -> list[Any]:
    """The run's job and its branches' (parallel branches, iterations) at every depth,
    or every job below it (agents' jobs, sub-workflows' runs too): one query per level
    of nesting."""
    found, frontier = [root], [root]
    while frontier:
        below = Job.objects.filter(parent_id__in=frontier)
        if branches_only:
            below = below.filter(job_type="workflow-branch")
        frontier = list(below.values_list("pk", flat=True))
        found += frontier
    return found


def run_pending_checkpoints(root: Any) -> QuerySet[Checkpoint]:
    """What the run waits for people on, anywhere below it (its branches, its agents'
    tool calls, its sub-workflows)."""
    return Checkpoint.objects.filter(
        job_id__in=run_jobs(root, branches_only=False), status=CheckpointStatus.PENDING
    ).order_by("opened_at", "pk")


def run_nodes(run: WorkflowRun) -> list[dict[str, Any]]:
    """Every node of the run's version with its state in this run."""
    jobs = run_jobs(run.job_id)
    steps = list(JobStep.objects.filter(job_id__in=jobs).order_by("position"))
    checkpoints = {
        (str(job), key): pk
        for job, key, pk in Checkpoint.objects.filter(job_id__in=jobs).values_list(
            "job_id", "key", "pk"
        )
    }
    found = _Steps(steps, run.job_id)
    definition = run.version.definition
    view = _nodes(definition["nodes"], found, found.root, "", checkpoints)
    if definition.get("on_failure"):
        view += _nodes(definition["on_failure"], found, found.root, "on_failure/", checkpoints)
    return view


def _nodes(
    nodes: list[dict[str, Any]],
    found: _Steps,
    job_id: str,
    prefix: str,
    checkpoints: dict[tuple[str, str], int],
) -> list[dict[str, Any]]:
    return [_node(node, found, job_id, prefix, checkpoints) for node in nodes]


def _node(
    node: dict[str, Any],
    found: _Steps,
    job_id: str,
    prefix: str,
    checkpoints: dict[tuple[str, str], int],
) -> dict[str, Any]:
    key = f"{prefix}{node['id']}"
    steps = found.of(job_id)
    record = steps.get(key)
    parts = [s for k, s in steps.items() if k.startswith(f"{key}:")]
    done = record is not None and record.status == StepStatus.SUCCEEDED
    output: dict[str, Any] = (record.output or {}) if done and record is not None else {}
    started = [s.started_at for s in [*parts, *([record] if record else [])] if s.started_at]
    view: dict[str, Any] = {
        "id": node["id"],
        "type": node["type"],
        "name": node.get("name", ""),
        "key": key,
        "job_id": job_id,
        "status": _status(record, parts),
        "input": output.get("input") if done else _evaluated(parts),
        "output": output.get("output"),
        "error": output.get("error")
        if done
        else (record.error if record is not None and record.error else None),
        "attempts": record.attempt
        if record is not None
        else max((p.attempt for p in parts), default=0),
        "started_at": min(started) if started else None,
        "finished_at": record.finished_at if done and record is not None else None,
        "usage": output.get("usage"),
        "checkpoint_id": checkpoints.get((job_id, f"{key}:wait")),
        "child_jobs": _children(parts, output),
    }
    if view["started_at"] and view["finished_at"]:
        view["duration_seconds"] = (view["finished_at"] - view["started_at"]).total_seconds()
    config = node.get("config") or {}
    if node["type"] == "branch":
        view["cases"] = [
            _nodes(case["nodes"], found, job_id, prefix, checkpoints)
            for case in config.get("cases", [])
        ]
        view["default"] = _nodes(config.get("default", []), found, job_id, prefix, checkpoints)
    elif node["type"] == "parallel":
        ids = view["child_jobs"]
        view["branches"] = [
            {
                "name": branch.get("name") or str(index),
                "job_id": ids[index] if index < len(ids) else None,
                "nodes": _nodes(branch["nodes"], found, ids[index], "", checkpoints)
                if index < len(ids)
                else _nodes(branch["nodes"], found, "", "", checkpoints),
            }
            for index, branch in enumerate(config.get("branches", []))
        ]
    elif node["type"] == "for_each":
        view["iterations"] = _iterations(node, key, found, job_id, checkpoints)
    return view


def _status(record: JobStep | None, parts: list[JobStep]) -> str:
    if record is not None:
        if record.status == StepStatus.SUCCEEDED:
            return str((record.output or {}).get("status", "succeeded"))
        return "failed" if record.status == StepStatus.FAILED else "running"
    if any(p.status == StepStatus.WAITING for p in parts):
        return "waiting"
    if any(p.status == StepStatus.FAILED for p in parts):
        return "retrying"
    return "running" if parts else "pending"


def _evaluated(parts: list[JobStep]) -> Any:
    for part in parts:
        if part.key.endswith(":input") and part.status == StepStatus.SUCCEEDED:
            return (part.output or {}).get("value")
        if part.key.endswith(":start") and isinstance(part.output, dict):
            return part.output.get("input")
    return None


def _children(parts: list[JobStep], output: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    for part in parts:
        if ":start" in part.key and part.status == StepStatus.SUCCEEDED:
            value = part.output
            if isinstance(value, list):
                ids += [str(v) for v in value]
            elif isinstance(value, dict) and value.get("job_id"):
                ids.append(str(value["job_id"]))
    return ids


def _iterations(
    node: dict[str, Any],
    key: str,
    found: _Steps,
    job_id: str,
    checkpoints: dict[tuple[str, str], int],
) -> list[Any]:
    config = node.get("config") or {}
    inline = [k for k in found.of(job_id) if k.startswith(f"{key}[")]
    if inline:
        count = 1 + max(int(k[len(key) + 1 : k.index("]", len(key))]) for k in inline)
        return [
            _nodes(config.get("nodes", []), found, job_id, f"{key}[{i}]/", checkpoints)
            for i in range(count)
        ]
    children = [
        s.output
        for s in sorted(found.of(job_id).values(), key=lambda s: s.position)  # wave order
        if s.key.startswith(f"{key}:start") and isinstance(s.output, list)
    ]
    return [
        {"job_id": pk, "nodes": _nodes(config.get("nodes", []), found, str(pk), "", checkpoints)}
        for wave in children
        for pk in wave
    ]


def node_types() -> list[dict[str, Any]]:
    """Every node type with the JSON Schema of its config (what a builder renders)."""
    return [
        {"type": t.name, "description": t.description, "config_schema": t.config}
        for t in NODE_TYPES.values()
    ]


def run_of_job(job: Job) -> WorkflowRun | None:
    return WorkflowRun.objects.filter(job=job).first()
