"""Built-in tools: write_file and http_request ask a person first; search_memory and
run_job do not (run_job's child job has its own checkpoints)."""

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings

from agents import memory
from agents.tools.base import Tool, ToolInvocation, register_tool
from jobs.runtime import (
    ChildJobWaiter,
    FileSpec,
    NonRetryableError,
    UnsafePath,
    job_workspace,
    safe_path,
    write_files,
)
from jobs.services import child_depth_error, job_create

HTTP_BODY_LIMIT = 20_000


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


def host_allowed(host: str) -> bool:
    """Exact names, or ".example.com" for the domain and its subdomains."""
    host = host.lower().rstrip(".")
    for allowed in settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS:
        allowed = allowed.lower()
        if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
            return True
    return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave the allow-list: report it instead


def _http_request(call: ToolInvocation) -> dict[str, Any]:
    args = call.arguments
    url = urllib.parse.urlsplit(args["url"])
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ToolFailed(f"only http(s) URLs with a host are allowed, not {args['url']!r}")
    if not host_allowed(url.hostname):
        raise ToolFailed(f"host {url.hostname!r} is not in COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS")
    body = args.get("body")
    request = urllib.request.Request(
        args["url"],
        method=args.get("method", "GET"),
        data=body.encode() if isinstance(body, str) else None,
        headers={"User-Agent": "Countersign-Agent/1", **args.get("headers", {})},
    )
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=settings.COUNTERSIGN_HTTP_TOOL_TIMEOUT_SECONDS) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read(HTTP_BODY_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, exc.headers, exc.read(HTTP_BODY_LIMIT + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ToolFailed(f"request failed: {exc}") from exc
    return {
        "status": status,
        "content_type": headers.get("Content-Type", ""),
        "body": raw[:HTTP_BODY_LIMIT].decode(errors="replace"),
        "truncated": len(raw) > HTTP_BODY_LIMIT,
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
    child_id = ctx.step(
        f"{call.key}:start",
        lambda: str(
            job_create(
                job_type=call.arguments["job_type"],
                input=call.arguments.get("input", {}),
                parent=job,
                organization=job.organization,
                created_by=job.created_by,
                idempotency_key=f"child:{job.pk}:{call.key}",
            ).pk
        ),
    )
    result: dict[str, Any] = ctx.wait(f"{call.key}:wait", ChildJobWaiter(job_id=child_id))
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
