"""Expressions in workflows: CEL everywhere (conditions, `skip_if`, `retry_if`, event
matches, transforms, concurrency keys) and `{{ … }}` inside string templates.

CEL has no loops, no side effects and no I/O; on top of that, what an expression may do
is bounded here:

- its source is at most MAX_LENGTH characters;
- comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`) do not nest
  (MAX_NESTING) and appear at most MAX_COMPREHENSIONS times. Work is then at most
  quadratic in the size of the data an expression reads (a body may read a whole list
  for each item of another): with nesting, `L.map(x, L.map(y, L))` over a 300-item
  literal took minutes and gigabytes; `L.map(x, L)` over the longest literal the
  length bound allows takes a few seconds;
- it calls only CEL's standard functions (FUNCTIONS), none of which loops;
- its result, as JSON, is at most MAX_RESULT_BYTES; a rendered template likewise.

Expressions are compiled when a version is saved (a syntax error is a field error with
the node's path) and again, cached, when a run evaluates them. Never Python `eval`.
"""

import json
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import cel

from core.errors import ApplicationError

MAX_LENGTH = 2000
MAX_NESTING = 1
MAX_COMPREHENSIONS = 4
MAX_RESULT_BYTES = 64 * 1024
CONTEXT_NAMES = ("input", "vars", "steps", "event", "run", "item", "index", "error")
COMPREHENSIONS = ("map", "filter", "all", "exists", "exists_one")
# CEL's standard functions that take bounded work; operators (`_+_`, `@in`) besides.
FUNCTIONS = frozenset(
    {
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "dyn",
        "type",
        "timestamp",
        "duration",
        "matches",
        "contains",
        "startsWith",
        "endsWith",
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)

TEMPLATE = re.compile(r"\{\{((?:(?!\}\}).)*)\}\}", re.DOTALL)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_COMPREHENSION = re.compile(r"\.(" + "|".join(COMPREHENSIONS) + r")\s*\(")
_BOUND_NAME = re.compile(r"\.(?:" + "|".join(COMPREHENSIONS) + r")\s*\(\s*([A-Za-z_]\w*)\s*,")
_STEP_DOT = re.compile(r"\bsteps\s*\.\s*([A-Za-z_]\w*)")
_STEP_INDEX = re.compile(r"\bsteps\s*\[\s*([\"'])(.*?)\1\s*\]")


class ExpressionError(ApplicationError):
    """An expression that does not compile, breaks a bound, or fails when evaluated."""


def _without_strings(source: str) -> str:
    return _STRING.sub('""', source)


def _check_bounds(source: str) -> None:
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    code = _without_strings(source)
    found = list(_COMPREHENSION.finditer(code))
    if len(found) > MAX_COMPREHENSIONS:
        raise ExpressionError(f"at most {MAX_COMPREHENSIONS} map/filter/all/exists per expression")
    # Nesting: a comprehension whose parentheses open inside another's.
    depth, open_at, deepest = 0, [], 0
    starts = {m.end() - 1 for m in found}
    for position, char in enumerate(code):
        if char == "(":
            open_at.append(position in starts)
            depth += position in starts
            deepest = max(deepest, depth)
        elif char == ")" and open_at:
            depth -= open_at.pop()
    if deepest > MAX_NESTING:
        raise ExpressionError(f"map/filter/all/exists nest at most {MAX_NESTING} deep")


@lru_cache(maxsize=4096)
def compile_expression(source: str, names: tuple[str, ...] = CONTEXT_NAMES) -> Any:
    """The compiled program, or ExpressionError saying what is wrong; it may read only
    `names` (where it is evaluated decides which exist)."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be a non-empty string")
    _check_bounds(source)
    try:
        program = cel.compile(source)
    except ValueError as exc:
        raise ExpressionError(f"does not compile: {_first_line(exc)}") from None
    bound = set(_BOUND_NAME.findall(_without_strings(source)))  # map(x, …) binds x
    unknown = sorted(set(program.variables()) - set(names) - bound)
    if unknown:
        raise ExpressionError(
            f"unknown name(s) {', '.join(unknown)}; this expression may use {', '.join(names)}"
        )
    # Operators are named by symbols (`_+_`, `!_`) or `@…` (`@in`); anything else is a
    # function, and must be a known one.
    strange = sorted(
        f
        for f in program.functions()
        if f not in FUNCTIONS and not f.startswith("@") and re.search("[A-Za-z]", f)
    )
    if strange:
        raise ExpressionError(f"unknown function(s) {', '.join(strange)}")
    return program


def step_references(source: str) -> set[str]:
    """The node ids an expression (or template) reads through `steps`."""
    found = set(_STEP_DOT.findall(_without_strings(source)))
    return found | {m.group(2) for m in _STEP_INDEX.finditer(source)}


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _jsonable(value: Any) -> Any:
    """CEL values as JSON values (timestamps become ISO strings, bytes text)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _bounded(value: Any) -> Any:
    value = _jsonable(value)
    try:
        dumped = json.dumps(value, default=str, ensure_ascii=False)
        dumped.encode()  # a lone surrogate ('\ud800' in CEL) has no UTF-8
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"result is not JSON: {exc}") from None
    if len(dumped) > MAX_RESULT_BYTES:
        raise ExpressionError(f"result is larger than {MAX_RESULT_BYTES} bytes")
    if "\\u0000" in dumped:  # '\u0000' in CEL: PostgreSQL stores no NUL
        raise ExpressionError("result holds a NUL character")
    return value


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """The value of `source` in `context` (only the names it uses are passed)."""
    program = compile_expression(source)
    names = {name: context[name] for name in program.variables() if name in context}
    try:
        return _bounded(program.execute(names))
    except ExpressionError:
        raise
    except KeyError as exc:
        raise ExpressionError(f"{source!r}: no such field {exc}") from None
    except Exception as exc:  # CEL's own errors: type mismatch, division by zero, …
        raise ExpressionError(f"{source!r}: {_first_line(exc)}") from None


def condition(source: str, context: Mapping[str, Any]) -> bool:
    value = evaluate(source, context)
    if not isinstance(value, bool):
        raise ExpressionError(f"{source!r} must be true or false, not {value!r}")
    return value


def template_parts(text: str) -> Iterator[str]:
    """The expressions inside a template's `{{ … }}`."""
    for match in TEMPLATE.finditer(text):
        yield match.group(1).strip()


def render(template: Any, context: Mapping[str, Any]) -> Any:
    """A template (a string, or lists and objects of them) with every `{{ … }}` evaluated.

    A string that is exactly one `{{ expression }}` becomes the expression's value (an
    object stays an object); otherwise values are written into the text (JSON for
    objects and lists)."""
    if isinstance(template, str):
        whole = TEMPLATE.fullmatch(template.strip())
        if whole is not None:
            return evaluate(whole.group(1).strip(), context)

        def text(match: re.Match[str]) -> str:
            value = evaluate(match.group(1).strip(), context)
            return value if isinstance(value, str) else json.dumps(value)

        rendered = TEMPLATE.sub(text, template)
        if len(rendered) > MAX_RESULT_BYTES:
            raise ExpressionError(f"rendered text is larger than {MAX_RESULT_BYTES} bytes")
        return rendered
    if isinstance(template, Mapping):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, context) for value in template]
    return template


def template_expressions(template: Any) -> Iterator[str]:
    """Every expression inside a template structure."""
    if isinstance(template, str):
        yield from template_parts(template)
    elif isinstance(template, Mapping):
        for value in template.values():
            yield from template_expressions(value)
    elif isinstance(template, list):
        for value in template:
            yield from template_expressions(value)
