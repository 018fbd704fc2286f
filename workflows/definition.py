"""The shape of a workflow definition, and its validation with field paths.

    {"input_schema": {...}, "variables": {...}, "nodes": [node, ...],
     "on_failure": [node, ...], "concurrency": {"limit": 2, "key": "input.customer"},
     "triggers": [{"type": "event", "event": "order.created", "filter": "..."},
                  {"type": "schedule", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
                  {"type": "message"}],
     "output": "{{ steps.reply.output }}",
     "tool": {"description": "...", "requires_approval": false}}

A node: {"id", "type", "name", "config", "retry": {"attempts", "backoff", "max_backoff",
"retry_if"}, "timeout", "skip_if", "continue_on_error"}. The nodes run in sequence;
`branch`, `parallel` and `for_each` hold node lists of their own. Every node type's
`config` has a JSON Schema (NODE_TYPES), which the builder renders forms from.

`definition_errors` answers every problem at once as {"nodes.3.config.url": [...]}.
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from jsonschema import Draft202012Validator

from agents.services import config_errors
from core.schemas import MAX_JSON_DEPTH, json_problem, schema_problems
from workflows.expressions import (
    CONTEXT_NAMES,
    ExpressionError,
    compile_expression,
    step_references,
    template_expressions,
)

MAX_DEFINITION_BYTES = 1024 * 1024
MAX_SECONDS = 31 * 86400  # timeouts, expiries, sleeps
MAX_NODES = 2000
MAX_DEPTH = 16
MAX_FOR_EACH_ITEMS = 1000
# The node types that are one step, which a retry policy re-runs.
RETRIED_TYPES = frozenset({"llm", "http", "image", "emit_event", "transform"})
ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

TEMPLATE = {"description": "text; {{ expression }} parts are evaluated"}
ANY_TEMPLATE = {"description": "any JSON; {{ expression }} strings inside are evaluated"}
EXPRESSION = {"type": "string", "minLength": 1, "description": "a CEL expression"}
NODE_LIST = {"type": "array", "items": {"type": "object"}}
SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS}
ON_TIMEOUT = {"enum": ["reject", "approve", "fail"], "default": "reject"}
AGENT_REF = {"type": ["integer", "string"], "description": "an agent's id or name"}


@dataclass(frozen=True)
class NodeType:
    name: str
    description: str
    config: dict[str, Any]  # JSON Schema of `config`
    expressions: tuple[str, ...] = ()  # config fields holding an expression
    templates: tuple[str, ...] = ()  # config fields holding a template
    # Where the node's own node lists are: "nodes", "default", "cases.*.nodes", …
    children: tuple[str, ...] = ()


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


NODE_TYPES: dict[str, NodeType] = {
    t.name: t
    for t in [
        NodeType(
            "agent",
            "Run one of the organization's agents on a task (an agent-task child job).",
            _object(
                {
                    "agent": AGENT_REF,
                    "task": {"type": "string", "minLength": 1, **TEMPLATE},
                    "context": {"type": "object", **ANY_TEMPLATE},
                    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200000},
                },
                ("agent", "task"),
            ),
            templates=("task", "context"),
        ),
        NodeType(
            "llm",
            "One model call with a prompt; optionally JSON checked against a schema.",
            _object(
                {
                    "agent": AGENT_REF,
                    "provider": {"type": "string"},
                    "model": {"type": "string"},
                    "parameters": {"type": "object"},
                    "system": {"type": "string", **TEMPLATE},
                    "prompt": {"type": "string", "minLength": 1, **TEMPLATE},
                    "output_schema": {"type": "object"},
                },
                ("prompt",),
            ),
            templates=("system", "prompt"),
        ),
        NodeType(
            "http",
            "An HTTP request to an allowed host; the response is the output.",
            _object(
                {
                    "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "default": "GET"},
                    "url": {"type": "string", "minLength": 1, **TEMPLATE},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": ANY_TEMPLATE,
                    "max_bytes": {"type": "integer", "minimum": 1, "maximum": 1048576},
                },
                ("url",),
            ),
            templates=("url", "headers", "body"),
        ),
        NodeType(
            "image",
            "Generate an image (stored in the run's workspace; its path is the output).",
            _object(
                {
                    "prompt": {"type": "string", "minLength": 1, **TEMPLATE},
                    "provider": {"type": "string", "default": "offline"},
                    "model": {"type": "string"},
                    "size": {"enum": ["256x256", "512x512", "1024x1024"], "default": "256x256"},
                },
                ("prompt",),
            ),
            templates=("prompt",),
        ),
        NodeType(
            "branch",
            "The first case whose condition holds runs; else `default`.",
            _object(
                {
                    "cases": {
                        "type": "array",
                        "minItems": 1,
                        "items": _object(
                            {"when": EXPRESSION, "nodes": NODE_LIST}, ("when", "nodes")
                        ),
                    },
                    "default": NODE_LIST,
                },
                ("cases",),
            ),
            children=("cases.*.nodes", "default"),
        ),
        NodeType(
            "parallel",
            "Branches run at the same time as child jobs, then join.",
            _object(
                {
                    "branches": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": _object(
                            {"name": {"type": "string"}, "nodes": NODE_LIST}, ("nodes",)
                        ),
                    },
                    "join": {"enum": ["all", "any"], "default": "all"},
                    "fail_fast": {"type": "boolean", "default": False},
                },
                ("branches",),
            ),
            children=("branches.*.nodes",),
        ),
        NodeType(
            "for_each",
            "The nodes once per item of a list (`item`, `index`); the output is "
            "the list of each iteration's last output.",
            _object(
                {
                    "items": EXPRESSION,
                    "nodes": NODE_LIST,
                    "max_parallel": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1},
                },
                ("items", "nodes"),
            ),
            expressions=("items",),
            children=("nodes",),
        ),
        NodeType(
            "approval",
            "A checkpoint: a person approves (maybe with edits) or rejects.",
            _object(
                {
                    "title": {"type": "string", "minLength": 1, **TEMPLATE},
                    "description": {"type": "string", **TEMPLATE},
                    "payload": ANY_TEMPLATE,
                    "required_approvals": {"type": "integer", "minimum": 1, "maximum": 10},
                    "expires_in": SECONDS,
                    "on_timeout": ON_TIMEOUT,
                },
                ("title",),
            ),
            templates=("title", "description", "payload"),
        ),
        NodeType(
            "input",
            "A checkpoint where a person supplies data matching a JSON Schema.",
            _object(
                {
                    "title": {"type": "string", "minLength": 1, **TEMPLATE},
                    "description": {"type": "string", **TEMPLATE},
                    "schema": {"type": "object"},
                    "expires_in": SECONDS,
                    "on_timeout": {"enum": ["reject", "fail"], "default": "reject"},
                },
                ("title", "schema"),
            ),
            templates=("title", "description"),
        ),
        NodeType(
            "wait_for_event",
            "Wait for an event by name whose data matches; a timeout "
            "either fails the node or continues with null.",
            _object(
                {
                    "event": {"type": "string", "minLength": 1, "maxLength": 200},
                    "match": EXPRESSION,
                    "timeout": SECONDS,
                    "on_timeout": {"enum": ["fail", "continue"], "default": "fail"},
                },
                ("event",),
            ),
            expressions=("match",),
        ),
        NodeType(
            "emit_event",
            "Send an event, so agents and workflows can signal each other.",
            _object(
                {
                    "event": {"type": "string", "minLength": 1, "maxLength": 200},
                    "data": ANY_TEMPLATE,
                },
                ("event",),
            ),
            templates=("data",),
        ),
        NodeType(
            "sleep",
            "A durable timer.",
            _object(
                {"seconds": SECONDS},
                ("seconds",),
            ),
        ),
        NodeType(
            "workflow",
            "Run another workflow of the organization as a child and wait.",
            _object(
                {"workflow": {"type": "string", "minLength": 1}, "input": ANY_TEMPLATE},
                ("workflow",),
            ),
            templates=("input",),
        ),
        NodeType(
            "transform",
            "Set variables from expressions; the output is what was set.",
            _object(
                {
                    "set": {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": EXPRESSION,
                        "propertyNames": {"pattern": ID_PATTERN},
                    }
                },
                ("set",),
            ),
        ),
    ]
}

NODE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "type"],
    "properties": {
        "id": {"type": "string", "pattern": ID_PATTERN},
        "type": {"enum": sorted(NODE_TYPES)},
        "name": {"type": "string", "maxLength": 200},
        "config": {"type": "object"},
        "retry": _object(
            {
                "attempts": {"type": "integer", "minimum": 1, "maximum": 20},
                "backoff": {"type": "number", "minimum": 0, "maximum": 3600},
                "max_backoff": {"type": "number", "minimum": 0, "maximum": 86400},
                "retry_if": EXPRESSION,
            }
        ),
        "timeout": SECONDS,
        "skip_if": EXPRESSION,
        "continue_on_error": {"type": "boolean"},
    },
}
TRIGGER_SCHEMA = {
    "oneOf": [
        _object(
            {
                "type": {"const": "event"},
                "event": {"type": "string", "minLength": 1, "maxLength": 200},
                "filter": EXPRESSION,
            },
            ("type", "event"),
        ),
        _object(
            {
                "type": {"const": "schedule"},
                "cron": {"type": "string", "minLength": 1},
                "timezone": {"type": "string"},
            },
            ("type", "cron"),
        ),
        _object({"type": {"const": "message"}}, ("type",)),
    ]
}
DEFINITION_SCHEMA = _object(
    {
        "input_schema": {"type": "object"},
        "variables": {"type": "object", "propertyNames": {"pattern": ID_PATTERN}},
        "nodes": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "on_failure": {"type": "array", "items": {"type": "object"}},
        "concurrency": _object(
            {"limit": {"type": "integer", "minimum": 1, "maximum": 1000}, "key": EXPRESSION},
            ("limit",),
        ),
        "triggers": {"type": "array", "items": TRIGGER_SCHEMA},
        "output": ANY_TEMPLATE,
        "tool": _object(
            {
                "description": {"type": "string", "maxLength": 1000},
                "requires_approval": {"type": "boolean"},
            }
        ),
    },
    ("nodes",),
)


def checksum(definition: Any) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def child_lists(node: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """(path inside the node, node list) for each node list a container holds."""
    config = node.get("config") or {}
    for pattern in NODE_TYPES[node["type"]].children if node.get("type") in NODE_TYPES else ():
        head, _, rest = pattern.partition(".*.")
        value = config.get(head)
        if rest:
            for index, entry in enumerate(value if isinstance(value, list) else []):
                if isinstance(entry, dict) and isinstance(entry.get(rest), list):
                    yield f"config.{head}.{index}.{rest}", entry[rest]
        elif isinstance(value, list):
            yield f"config.{head}", value


@dataclass
class _Check:
    """What validation collects while it walks the tree."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # id → path of its node
    agents: list[tuple[str, Any]] = field(default_factory=list)  # (path, reference)
    workflows: list[tuple[str, str]] = field(default_factory=list)  # (path, slug)
    count: int = 0

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path or "definition", []).append(message)


def _schema_errors(check: _Check, schema: dict[str, Any], value: Any, base: str) -> bool:
    found = False
    for error in Draft202012Validator(schema).iter_errors(value):
        where = ".".join(str(p) for p in error.absolute_path)
        check.add(".".join(part for part in (base, where) if part), error.message)
        found = True
    return found


def _json_schema(check: _Check, schema: Any, path: str) -> None:
    for problem in schema_problems(schema):
        check.add(path, problem)


def _expression(
    check: _Check,
    source: str,
    path: str,
    available: set[str],
    names: tuple[str, ...] = CONTEXT_NAMES,
) -> None:
    try:
        compile_expression(source, names)
    except ExpressionError as exc:
        check.add(path, str(exc))
        return
    for node_id in sorted(step_references(source) - available):
        check.add(path, f"refers to steps.{node_id}, which does not run before this node")


def _template(check: _Check, template: Any, path: str, available: set[str]) -> None:
    for source in template_expressions(template):
        _expression(check, source, path, available)


def _nodes(check: _Check, nodes: list[Any], path: str, available: set[str], depth: int) -> set[str]:
    """Validate a node list run in sequence; return the ids that ran by its end."""
    if depth > MAX_DEPTH:
        check.add(path, f"containers nest at most {MAX_DEPTH} deep")
        return available
    available = set(available)
    for index, node in enumerate(nodes):
        here = f"{path}.{index}"
        check.count += 1
        if not isinstance(node, dict) or _schema_errors(check, NODE_SCHEMA, node, here):
            continue
        node_type = NODE_TYPES[node["type"]]
        if node["id"] in check.ids:
            check.add(f"{here}.id", f"id {node['id']!r} is also used at {check.ids[node['id']]}")
        check.ids.setdefault(node["id"], here)
        config = node.get("config") or {}
        if not _schema_errors(check, node_type.config, config, f"{here}.config"):
            _node_config(check, node, config, here, available, depth)
        for key in ("skip_if",):
            if key in node:
                _expression(check, node[key], f"{here}.{key}", available)
        if "retry" in node and node["type"] not in RETRIED_TYPES:
            check.add(
                f"{here}.retry",
                f"a {node['type']} node is not retried: retry applies to "
                f"{', '.join(sorted(RETRIED_TYPES))} (an agent's job retries its own "
                "provider errors)",
            )
        elif "retry_if" in node.get("retry", {}):
            _expression(
                check, node["retry"]["retry_if"], f"{here}.retry.retry_if", available | {node["id"]}
            )
        available.add(node["id"])
    return available


def _node_config(
    check: _Check,
    node: dict[str, Any],
    config: dict[str, Any],
    here: str,
    available: set[str],
    depth: int,
) -> None:
    node_type = NODE_TYPES[node["type"]]
    for name in node_type.expressions:
        if name in config:
            _expression(check, config[name], f"{here}.config.{name}", available)
    for name in node_type.templates:
        if name in config:
            _template(check, config[name], f"{here}.config.{name}", available)
    kind = node["type"]
    if kind == "transform":
        for name, source in config["set"].items():
            _expression(check, source, f"{here}.config.set.{name}", available)
    elif kind == "branch":
        for index, case in enumerate(config["cases"]):
            _expression(check, case["when"], f"{here}.config.cases.{index}.when", available)
    elif kind in ("agent", "llm") and "agent" in config:
        check.agents.append((f"{here}.config.agent", config["agent"]))
    elif kind == "workflow":
        check.workflows.append((f"{here}.config.workflow", config["workflow"]))
    elif kind == "input":
        _json_schema(check, config["schema"], f"{here}.config.schema")
    if kind == "llm":
        if "output_schema" in config:
            _json_schema(check, config["output_schema"], f"{here}.config.output_schema")
        if "agent" not in config and not ("provider" in config and "model" in config):
            check.add(f"{here}.config", "name an agent, or a provider and a model")
        model: dict[str, Any] = {
            k: config[k] for k in ("provider", "model", "parameters") if k in config
        }
        if "provider" in model and "model" in model:  # as an agent's are checked
            for field_name, problems in config_errors(model).items():
                for problem in problems:
                    check.add(f"{here}.config.{field_name}", problem)
    # A container's lists: a branch's cases and a parallel's branches each see what ran
    # before the container; what ran inside them is visible after it (for_each's is not:
    # its output is the list).
    inner = available | ({"item", "index"} if kind == "for_each" else set())
    seen: set[str] = set()
    for sub_path, nodes in child_lists(node):
        seen |= _nodes(check, nodes, f"{here}.{sub_path}", inner, depth + 1)
    if kind != "for_each":
        available |= seen - {"item", "index"}


def _triggers(check: _Check, triggers: list[Any]) -> None:
    for index, trigger in enumerate(triggers):
        here = f"triggers.{index}"
        if trigger.get("type") == "event" and "filter" in trigger:
            _expression(check, trigger["filter"], f"{here}.filter", set(), ("event",))
        elif trigger.get("type") == "schedule":
            cron = trigger.get("cron", "")
            if len(cron.split()) != 5 or not croniter.is_valid(cron):
                check.add(f"{here}.cron", "not a valid cron expression of 5 fields")
            else:
                try:  # "0 0 31 2 *" is well formed, and never comes
                    croniter(cron).get_next(float)
                except (CroniterError, ValueError, OverflowError):
                    check.add(f"{here}.cron", "names no time that ever comes")
            try:
                ZoneInfo(trigger.get("timezone") or "UTC")
            except (ZoneInfoNotFoundError, ValueError):
                check.add(f"{here}.timezone", f"unknown time zone {trigger.get('timezone')!r}")


@dataclass(frozen=True)
class Checked:
    """What validation found besides errors: what the caller checks against the
    database (agents and workflows named, by path)."""

    errors: dict[str, list[str]]
    agents: list[tuple[str, Any]]
    workflows: list[tuple[str, str]]


def check_definition(definition: Any) -> Checked:
    """Everything that can be checked without the database."""
    check = _Check()
    if problem := json_problem(definition, MAX_JSON_DEPTH):
        return Checked({"definition": [problem]}, [], [])
    try:
        size = len(json.dumps(definition))
    except (TypeError, ValueError):
        return Checked({"definition": ["must be JSON"]}, [], [])
    if size > MAX_DEFINITION_BYTES:
        return Checked({"definition": [f"larger than {MAX_DEFINITION_BYTES} bytes"]}, [], [])
    if _schema_errors(check, DEFINITION_SCHEMA, definition, ""):
        return Checked(check.errors, [], [])
    if "input_schema" in definition:
        _json_schema(check, definition["input_schema"], "input_schema")
    ran = _nodes(check, definition["nodes"], "nodes", set(), 0)
    _nodes(check, definition.get("on_failure", []), "on_failure", ran, 0)
    if "concurrency" in definition and "key" in definition["concurrency"]:
        # evaluated when a run is created: only its input exists then
        _expression(check, definition["concurrency"]["key"], "concurrency.key", set(), ("input",))
    if "output" in definition:
        _template(check, definition["output"], "output", ran)
    _triggers(check, definition.get("triggers", []))
    if check.count > MAX_NODES:
        check.add("nodes", f"at most {MAX_NODES} nodes")
    return Checked(check.errors, check.agents, check.workflows)


def find_list(definition: dict[str, Any], path: list[Any]) -> list[dict[str, Any]]:
    """The node list at `path` (["nodes", 3, "config", "branches", 0, "nodes"])."""
    here: Any = definition
    for part in path:
        here = here[part]
    return here
