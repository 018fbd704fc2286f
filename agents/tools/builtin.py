"""Built-in tools: write_file and http_request ask a person first; search_memory and
run_job do not (run_job's child job has its own checkpoints)."""

from typing import Any

from agents import memory
from agents.http import HttpFailed, http_call
from agents.tools.base import Tool, ToolInvocation, register_tool
from jobs.runtime import (
    ChildJobWaiter,
    FileSpec,
    JobError,
    NonRetryableError,
    UnsafePath,
    job_workspace,
    safe_path,
    write_files,
)
from jobs.services import child_depth_error, job_create


class ToolFailed(NonRetryableError):
    """The tool refused or failed in a way the model should hear about."""


def _write_file(call: ToolInvocation) -> dict[str, Any]:
    args = call.arguments
    try:
        written = write_files(call.ctx.workspace, [FileSpec(args["path"], args["content"])])
    except UnsafePath as exc:
        raise ToolFailed(str(exc)) from exc
    return {"written": written}


def validate_write_file(checkpoint: Any, payload: dict[str, Any]) -> dict[str, list[str]]:
    """At approval time: an edited path must stay inside the job's workspace."""
    path = payload.get("arguments", {}).get("path", "")
    try:
        safe_path(job_workspace(str(checkpoint.job_id)), path)
    except UnsafePath as exc:
        return {"arguments.path": [str(exc)]}
    return {}


def _http_request(call: ToolInvocation) -> dict[str, Any]:
    args = call.arguments
    body = args.get("body")
    try:
        response = http_call(
            args.get("method", "GET"),
            args["url"],
            headers=args.get("headers", {}),
            body=body.encode() if isinstance(body, str) else None,
        )
    except HttpFailed as exc:
        raise ToolFailed(str(exc)) from exc
    return {
        "status": response.status,
        "content_type": response.content_type,
        "body": response.body.decode(errors="replace"),
        "truncated": response.truncated,
    }


def _search_memory(call: ToolInvocation) -> dict[str, Any]:
    return {
        "memories": memory.search(
            call.agent, call.arguments["query"], call.arguments.get("limit", 5)
        )
    }


def _run_job(call: ToolInvocation) -> dict[str, Any]:
    """Start a child job (once: the start is a step) and wait for it to end."""
    ctx, job = call.ctx, call.ctx.job
    if too_deep := child_depth_error(job):  # told to the model, which may do without
        raise ToolFailed(too_deep)

    def start() -> dict[str, Any]:
        try:
            child = job_create(
                job_type=call.arguments["job_type"],
                input=call.arguments.get("input", {}),
                parent=job,
                organization=job.organization,
                created_by=job.created_by,
                idempotency_key=f"child:{job.pk}:{call.key}",
            )
        except JobError as exc:  # an unknown type, a refused input: the model is told
            return {"error": str(exc), "fields": exc.fields}
        return {"job_id": str(child.pk)}

    started = ctx.step(f"{call.key}:start", start)
    if isinstance(started, str):  # recorded by an earlier release: the child's id
        started = {"job_id": started}
    if "error" in started:
        raise ToolFailed(started["error"])
    result: dict[str, Any] = ctx.wait(f"{call.key}:wait", ChildJobWaiter(job_id=started["job_id"]))
    return result


register_tool(
    Tool(
        name="write_file",
        requires_approval=True,
        run=_write_file,
        description="Write a text file in the job's workspace (a person approves it first).",
        parameters={
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "content"],
            "properties": {
                "path": {
                    "type": "string",
                    "minLength": 1,
                    "description": "relative to the workspace",
                },
                "content": {"type": "string"},
            },
        },
        extra={"payload_validator": "agents.tools.builtin.validate_write_file"},
    )
)
register_tool(
    Tool(
        name="http_request",
        requires_approval=True,
        run=_http_request,
        description="Make an HTTP request to an allowed host (a person approves it first).",
        parameters={
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                "url": {"type": "string", "minLength": 1},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string"},
            },
        },
    )
)
register_tool(
    Tool(
        name="search_memory",
        run=_search_memory,
        description="Search this agent's long-term memories by meaning.",
        parameters={
            "type": "object",
            "additionalProperties": False,
            "required": ["query"],
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20},
            },
        },
    )
)
register_tool(
    Tool(
        name="run_job",
        run=_run_job,
        durable=True,
        description="Start another job (any registered job type) and wait for its result.",
        parameters={
            "type": "object",
            "additionalProperties": False,
            "required": ["job_type"],
            "properties": {
                "job_type": {"type": "string", "minLength": 1},
                "input": {"type": "object"},
            },
        },
    )
)
