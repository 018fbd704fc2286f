"""`agent-task`: an agent works on a task, calling its model and its tools until it
has a final answer. Each model call and each tool call is a memoized step; a tool
that requires approval opens a checkpoint showing the tool and its arguments, which
the reviewer may edit."""

import json
from typing import Any

from agents import memory
from agents.llm import call_model, record_usage
from agents.models import Agent, OnToolRejection
from agents.providers.base import Completion, Message, ToolCall
from agents.runs import agent_job_options
from agents.tools import Tool, ToolInvocation, resolve_tool
from agents.tools.builtin import ToolFailed
from jobs.runtime import JobContext, JobRejected, NonRetryableError, handler


def system_prompt(agent: Agent) -> str:
    """Instructions first, then the personality, in plain sentences."""
    parts = [f"You are {agent.name}." + (f" {agent.description}" if agent.description else "")]
    if agent.instructions:
        parts.append(agent.instructions.strip())
    persona = agent.personality or {}
    if persona.get("traits"):
        parts.append("Your traits: " + ", ".join(map(str, persona["traits"])) + ".")
    for key, label in (
        ("tone", "Tone"),
        ("behaviour", "Behaviour"),
        ("language_style", "Language style"),
    ):
        if persona.get(key):
            parts.append(f"{label}: {persona[key]}")
    return "\n\n".join(parts)


def user_message(task: str, context: dict[str, Any]) -> str:
    if not context:
        return task
    return f"{task}\n\nContext:\n{json.dumps(context, indent=2, sort_keys=True)}"


def build_prompt(agent: Agent, job_input: dict[str, Any]) -> list[Message]:
    system = system_prompt(agent)
    user = user_message(str(job_input["task"]), job_input.get("context") or {})
    budget = agent.context_window_tokens - memory.estimate_tokens(system + user)
    past = memory.history(agent, job_input.get("session_id", ""), budget_tokens=max(budget, 0))
    return [{"role": "system", "content": system}, *past, {"role": "user", "content": user}]


def load_agent(ctx: JobContext) -> Agent:
    agent_id = ctx.input.get("agent_id")
    agent = (
        Agent.objects.filter(pk=agent_id, organization_id=ctx.job.organization_id).first()
        if isinstance(agent_id, int)
        else None
    )
    if agent is None or agent.deleted_at is not None:
        raise NonRetryableError(
            f"agent {ctx.input.get('agent_id')!r} does not exist (or was deleted)"
        )
    return agent


def approval_schema(tool: Tool) -> dict[str, Any]:
    """What an edited payload must look like: the same tool, valid arguments."""
    return {
        "type": "object",
        "required": ["tool", "arguments"],
        "properties": {"tool": {"const": tool.name}, "arguments": tool.parameters},
    }


def agent_tools(agent: Agent) -> dict[str, Tool]:
    """The agent's tools by the name the model calls them (built-in, or lent by an app:
    a workflow named "workflow:<slug>" is the function "workflow_<slug>")."""
    tools = (resolve_tool(entry, agent.organization_id) for entry in agent.tools)
    return {tool.name: tool for tool in tools if tool is not None}


def run_tool_call(
    ctx: JobContext, agent: Agent, tools: dict[str, Tool], call: ToolCall, key: str
) -> dict[str, Any]:
    """The tool's result (or an error the model should see) as a JSON object."""
    tool = tools.get(call.name)
    if tool is None:
        return {"error": f"tool {call.name!r} is not available to this agent"}
    arguments = call.arguments
    errors = tool.argument_errors(arguments)
    if errors:
        return {"error": "invalid arguments: " + "; ".join(errors)}
    if tool.requires_approval:
        try:
            decision = ctx.checkpoint(
                f"{key}:approve",
                title=f"{agent.name} wants to call {tool.name}",
                description=tool.description,
                payload={"tool": tool.name, "arguments": arguments},
                payload_schema=approval_schema(tool),
                payload_validator=tool.extra.get("payload_validator", ""),
            )
        except JobRejected as exc:
            if agent.on_tool_rejection == OnToolRejection.FAIL:
                raise
            return {"error": f"a reviewer rejected this call: {exc}"}
        arguments = decision.payload["arguments"]
    invocation = ToolInvocation(ctx=ctx, agent=agent, key=key, arguments=arguments)
    if tool.durable:  # it makes its own steps; a refusal is decided the same way on replay
        try:
            return {"result": tool.run(invocation)}
        except ToolFailed as exc:
            return {"error": str(exc)}

    def run() -> dict[str, Any]:
        try:
            return {"result": tool.run(invocation)}
        except ToolFailed as exc:
            return {"error": str(exc)}

    return ctx.step(f"{key}:run", run)


INPUT_SCHEMA = {
    "type": "object",
    "required": ["agent_id", "task"],
    "properties": {
        "agent_id": {"type": "integer"},
        "task": {"type": "string", "minLength": 1},
        "context": {"type": "object"},
        "session_id": {"type": "string", "maxLength": 100},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200000},
    },
}


@handler(
    "agent-task",
    description="An agent works on a task with its model and tools.",
    input_schema=INPUT_SCHEMA,
    prepare=agent_job_options,
)
def agent_task(ctx: JobContext) -> dict[str, Any]:
    agent = load_agent(ctx)
    tools = agent_tools(agent)
    specs = [tool.spec() for tool in tools.values()]
    overrides = {"max_tokens": ctx.input["max_tokens"]} if ctx.input.get("max_tokens") else {}
    prompt: list[Message] = ctx.step("prompt", lambda: build_prompt(agent, dict(ctx.input)))
    messages = list(prompt)
    calls: list[dict[str, Any]] = []
    answer: str | None = None
    for turn in range(1, agent.max_turns + 1):
        out = ctx.step(
            f"llm:{turn}",
            lambda turn=turn: call_model(  # type: ignore[misc]
                agent, messages, specs, turn=turn, emit=ctx.emit, overrides=overrides
            ),
        )
        calls.append(out)
        totals = record_usage(ctx.job_id, calls)
        completion = Completion.from_dict(out["completion"])
        messages.append(
            {
                "role": "assistant",
                "content": completion.text,
                "tool_calls": [c.as_dict() for c in completion.tool_calls],
            }
        )
        if not completion.tool_calls:
            answer = completion.text
            break
        for index, call in enumerate(completion.tool_calls):
            result = run_tool_call(ctx, agent, tools, call, f"tool:{turn}:{index}")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": json.dumps(result, default=str),
                }
            )
    if answer is None:
        raise NonRetryableError(f"no final answer after {agent.max_turns} turns")
    session = str(ctx.input.get("session_id") or "")
    if session:
        ctx.step(
            "remember", lambda: memory.record(agent, session, ctx.job, messages[len(prompt) - 1 :])
        )
    return {
        "answer": answer,
        "turns": len(calls),
        "tokens_in": totals["tokens_in"],
        "tokens_out": totals["tokens_out"],
        "cost": None if totals["cost"] is None else str(totals["cost"]),
    }
