"""Tools an agent may call, by name. Built-in ones register on import."""

from agents.tools.base import (
    Tool,
    ToolInvocation,
    get_tool,
    known_entries,
    register_tool,
    register_tool_resolver,
    resolve_tool,
    tool_names,
)

__all__ = [
    "Tool",
    "ToolInvocation",
    "get_tool",
    "known_entries",
    "register_tool",
    "register_tool_resolver",
    "resolve_tool",
    "tool_names",
]

from agents.tools import builtin  # noqa: E402,F401  (registers the built-in tools)
