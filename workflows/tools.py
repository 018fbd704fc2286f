"""Workflows as agents' functions: an agent's `tools` may name "workflow:<slug>". The
model sees a function `workflow_<slug>` whose arguments are the workflow's
input_schema; calling it runs the workflow as a child of the agent's job (started once:
the start is a step) and the agent waits for it holding no worker. The workflow's
definition may ask for a person's approval first (`tool.requires_approval`)."""

import re
from typing import Any

from agents.tools import Tool, ToolInvocation
from agents.tools.builtin import ToolFailed
from core.errors import ApplicationError
from jobs.runtime import ChildJobWaiter
from workflows.models import Trigger, Workflow
from workflows.services import workflow_run_start

PREFIX = "workflow"


def function_name(slug: str) -> str:
    return "workflow_" + re.sub(r"[^A-Za-z0-9_]", "_", slug)[:55]


def workflow_tool(organization_id: int, slug: str) -> Tool | None:
    """The tool of the organization's workflow `slug` (the agents app's resolver)."""
    workflow = (
        # an inactive one too: an agent waiting on a call must replay the same tools (a
        # new call is refused when the run is started)
        Workflow.objects.filter(organization_id=organization_id, slug=slug)
        .select_related("current_version")
        .first()
    )
    if workflow is None or workflow.current_version is None:
        return None
    definition = workflow.current_version.definition
    described = definition.get("tool") or {}
    schema = definition.get("input_schema") or {"type": "object"}

    def run(call: ToolInvocation) -> dict[str, Any]:
        ctx = call.ctx

        def start() -> dict[str, Any]:
            try:
                run = workflow_run_start(
                    workflow=workflow,
                    input=call.arguments,
                    parent=ctx.job,
                    created_by=ctx.job.created_by,
                    trigger=Trigger.AGENT,
                    idempotency_key=f"tool:{ctx.job_id}:{call.key}",
                )
            except ApplicationError as exc:  # told to the model, which may do without
                return {"error": str(exc), "fields": exc.fields}
            return {"job_id": str(run.job_id)}

        started = ctx.step(f"{call.key}:start", start)
        if "error" in started:
            raise ToolFailed(started["error"])
        child = ctx.wait(f"{call.key}:wait", ChildJobWaiter(job_id=started["job_id"]))
        if child["status"] != "succeeded":
            raise ToolFailed(f"workflow {slug} {child['status']}: {child['error']}")
        return {"run": started["job_id"], "output": (child["result"] or {}).get("output")}

    return Tool(
        name=function_name(slug),
        run=run,
        durable=True,
        parameters=schema,
        requires_approval=bool(described.get("requires_approval")),
        description=described.get("description")
        or workflow.description
        or f"Run the workflow {workflow.name}.",
    )
