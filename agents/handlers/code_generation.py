"""`code-generation`: draft files, show them with diffs, write only what is approved.

Input: {"prompt": "...", "files": [{"path": ..., "content": ...}] (optional),
"agent_id": N (optional)}. With `files`, those are the draft. With an agent
(`agent_id`, which makes the job that agent's) whose provider is not offline, its
model drafts the files; otherwise an offline, deterministic generator drafts a small
Python module from the prompt. Either way nothing is written before a person approves.
"""

import difflib
import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from agents.handlers.agent_task import system_prompt
from agents.llm import call_model, record_usage
from agents.models import Agent
from agents.runs import agent_job_options
from jobs.runtime import (
    FileSpec,
    JobContext,
    NonRetryableError,
    UnsafePath,
    check_files,
    handler,
    job_workspace,
    safe_path,
    write_files,
)

FILES_SCHEMA = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["path", "content"],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "content": {"type": "string"},
                },
            },
        }
    },
}


def offline_draft(prompt: str) -> list[dict[str, str]]:
    """A deterministic stand-in for a model: the same prompt gives the same files."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40] or "generated"
    module = (
        f'"""{prompt.strip() or "Generated module"}."""\n\n\n'
        f"def {slug}() -> str:\n"
        f'    return "{slug}"\n'
    )
    test = (
        f"from {slug} import {slug}\n\n\n"
        f"def test_{slug}() -> None:\n"
        f'    assert {slug}() == "{slug}"\n'
    )
    return [
        {"path": f"{slug}.py", "content": module},
        {"path": f"tests/test_{slug}.py", "content": test},
    ]


FILES_INSTRUCTIONS = (
    "Reply with only a JSON object, no prose and no code fences: "
    '{"files": [{"path": "relative/path.py", "content": "the whole file"}]}. '
    "Paths are relative to the project root."
)


def parse_files(text: str) -> list[dict[str, str]]:
    """The files in a model's reply (a JSON object, possibly fenced)."""
    body = text.strip()
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body[body.index("{") : body.rindex("}") + 1])
    except ValueError as exc:
        raise NonRetryableError(
            f"the model's reply is not the JSON asked for: {exc}; it began {text[:120]!r}"
        ) from exc
    errors = list(Draft202012Validator(FILES_SCHEMA).iter_errors(data))
    if errors:
        raise NonRetryableError(f"the model's files do not match the schema: {errors[0].message}")
    return [{"path": f["path"], "content": f["content"]} for f in data["files"]]


def agent_draft(ctx: JobContext, prompt: str) -> list[dict[str, str]] | None:
    """Files drafted by the job's agent's model, or None to use the offline generator."""
    agent_id = ctx.input.get("agent_id")
    agent = (
        Agent.objects.alive().filter(pk=agent_id, organization_id=ctx.job.organization_id).first()
        if agent_id
        else None
    )
    if agent is None or agent.provider == "offline":
        return None
    messages = [
        {"role": "system", "content": f"{system_prompt(agent)}\n\n{FILES_INSTRUCTIONS}"},
        {"role": "user", "content": prompt},
    ]
    out = ctx.step("llm:draft", lambda: call_model(agent, messages, [], turn=1, emit=ctx.emit))
    record_usage(ctx.job_id, [out])
    return parse_files(out["completion"]["text"])


def validate_edited_files(checkpoint: Any, payload: dict[str, Any]) -> dict[str, list[str]]:
    """Refuse, at approval time, edited paths that could not be written safely."""
    workspace = job_workspace(str(checkpoint.job_id))
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, item in enumerate(payload["files"]):
        try:
            target = str(safe_path(workspace, item["path"]))
        except UnsafePath as exc:
            errors[f"files.{index}.path"] = [str(exc)]
            continue
        if target in seen:
            errors[f"files.{index}.path"] = [f"path {item['path']!r} appears twice"]
        seen.add(target)
    if not errors:  # each path is fine alone; now the batch as a whole (file vs folder)
        try:
            check_files(workspace, _specs(payload["files"]))
        except UnsafePath as exc:
            errors["files"] = [str(exc)]
    return errors


def _specs(files: Any) -> list[FileSpec]:
    if not isinstance(files, list) or not files:
        raise NonRetryableError("files must be a non-empty list of {path, content}")
    specs = []
    for item in files:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("path"), str)
            or not isinstance(item.get("content"), str)
        ):
            raise NonRetryableError("each file needs a string path and string content")
        specs.append(FileSpec(path=item["path"], content=item["content"]))
    return specs


def review_payload(ctx: JobContext, files: list[dict[str, str]]) -> dict[str, Any]:
    """Every file with its full content and a unified diff against the disk."""
    workspace = ctx.workspace
    entries = []
    for spec, target in check_files(workspace, _specs(files)):
        before = target.read_text(errors="replace") if target.is_file() else ""
        after = spec.data.decode(errors="replace")
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"a/{spec.path}" if before else "/dev/null",
                tofile=f"b/{spec.path}",
            )
        )
        entries.append(
            {
                "path": spec.path,
                "content": after,
                "diff": diff,
                "action": "modify" if target.exists() else "create",
            }
        )
    return {"workspace": str(workspace), "files": entries}


@handler(
    "code-generation",
    description="Draft files, approve them, then write them.",
    prepare=agent_job_options,
)
def code_generation(ctx: JobContext) -> dict[str, Any]:
    prompt = str(ctx.input.get("prompt", ""))
    supplied = ctx.input.get("files")
    drafted = agent_draft(ctx, prompt) if supplied is None else None
    draft = ctx.step(
        "draft", lambda: supplied if supplied is not None else drafted or offline_draft(prompt)
    )
    payload = ctx.step("review", lambda: review_payload(ctx, draft))
    decision = ctx.checkpoint(
        "write-files",
        title=f"Write {len(payload['files'])} file(s)",
        description=prompt,
        payload=payload,
        payload_schema=FILES_SCHEMA,
        payload_validator="agents.handlers.code_generation.validate_edited_files",
    )
    approved = _specs(decision.payload["files"])
    written = ctx.step("write", lambda: write_files(ctx.workspace, approved))
    return {
        "workspace": str(ctx.workspace),
        "written": written,
        "edited": decision.edited,
        "approved_by": decision.decided_by,
    }
