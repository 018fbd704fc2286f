"""JSON that people write: its shape (how deep, no NUL), and JSON Schemas (a
workflow's input, a form, a tool's arguments) checked when saved and applied without
ever fetching a `$ref`. jsonschema would otherwise retrieve a remote `$ref` with
urlopen, from the process that validates."""

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

REF_KEYS = ("$ref", "$dynamicRef")
# How deep objects and lists may nest in what is stored (a job's input, a workflow's
# definition, an event): 16 nested workflow containers take about 100 levels.
MAX_JSON_DEPTH = 128


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs fields mypy misses


NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]


def validator(schema: Any) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=NO_RETRIEVAL)


def validation_errors(schema: Any, data: Any) -> list[tuple[str, str]]:
    """(path, message) of each way `data` breaks `schema`; a `$ref` that does not resolve
    is one error, never a fetch or an exception."""
    try:
        return [
            (".".join(str(p) for p in error.absolute_path), error.message)
            for error in validator(schema).iter_errors(data)
        ]
    except Unresolvable as exc:
        return [("", f"the schema's $ref does not resolve: {exc}")]
    except RecursionError:  # a $ref cycle, or data deeper than a recursive schema goes
        return [("", "the schema recurses without end on this data")]


def schema_problems(schema: Any) -> list[str]:
    """Why `schema` is not a usable JSON Schema: not valid Draft 2020-12, a `$ref` that
    is not a pointer into the schema itself (`#`, `#/…`) that exists, or a loop of them."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [f"not a valid JSON Schema: {exc.message}"]
    problems = []
    for ref in _refs(schema):
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            problems.append(f"$ref {ref!r}: only references inside the schema (#/…) are allowed")
        elif _pointer(schema, ref) is _MISSING:
            problems.append(f"$ref {ref!r} points to nothing in the schema")
    # A chain of $refs that comes back to where it started applies to any data forever.
    if not problems and any("recurses" in m for _, m in validation_errors(schema, {})):
        problems.append("its $ref chain loops back on itself")
    return problems


def json_problem(value: Any, max_depth: int) -> str | None:
    """What no stored document may hold, found without recursion: objects and lists
    nested deeper than `max_depth`, or a NUL character (PostgreSQL stores no such
    text)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(item, dict):
            if any("\x00" in key for key in item if isinstance(key, str)):
                return "a NUL character (\\u0000) in a name"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and "\x00" in item:
            return "a NUL character (\\u0000) in a string"
    return None


def _refs(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in REF_KEYS:
                    yield value
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


_MISSING = object()


def _pointer(document: Any, ref: str) -> Any:
    here = document
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdecimal() and int(part) < len(here):
            here = here[int(part)]
        else:
            return _MISSING
    return here
