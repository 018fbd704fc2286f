"""The tool registry. A tool has a name, a description and a JSON schema for its
arguments (what the model sees), and a `requires_approval` flag: such a tool runs
only after a person approved the call, possibly with edited arguments."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator

from core.schemas import validation_errors

if TYPE_CHECKING:
    from agents.models import Agent
    from jobs.runtime import JobContext


@dataclass(frozen=True)
class ToolInvocation:
    ctx: "JobContext"
    agent: "Agent"
    key: str  # unique per call within the job: prefix for the tool's own step keys
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[ToolInvocation], Any]
    requires_approval: bool = False
    # A durable tool makes its own steps and waits (run_job); others run inside one step.
    durable: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def argument_errors(self, arguments: Any) -> list[str]:
        return [
            f"{where or 'arguments'}: {message}"
            for where, message in validation_errors(self.parameters, arguments)
        ]


_tools: dict[str, Tool] = {}


def register_tool(tool: Tool) -> Tool:
    Draft202012Validator.check_schema(tool.parameters)
    _tools[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    try:
        return _tools[name]
    except KeyError:
        raise LookupError(f"unknown tool {name!r}; known: {', '.join(sorted(_tools))}") from None


def tool_names() -> list[str]:
    return sorted(_tools)


# Tools an app above lends agents, named "<prefix>:<name>" in an agent's `tools`
# ("workflow:triage"): resolver(organization_id, name) -> the Tool, or None if the
# organization has no such thing.
Resolver = Callable[[int, str], Tool | None]
_resolvers: dict[str, Resolver] = {}


def register_tool_resolver(prefix: str, resolver: Resolver) -> None:
    _resolvers[prefix] = resolver


def resolve_tool(entry: str, organization_id: int) -> Tool | None:
    """The tool an agent's `tools` entry names, built-in or lent; None if unknown."""
    if entry in _tools:
        return _tools[entry]
    prefix, _, name = entry.partition(":")
    resolver = _resolvers.get(prefix)
    return resolver(organization_id, name) if resolver is not None and name else None


def known_entries() -> str:
    lent = ", ".join(f"{prefix}:<name>" for prefix in sorted(_resolvers))
    return ", ".join(sorted(_tools)) + (f"; and {lent}" if lent else "")
