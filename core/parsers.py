"""The API's JSON parser: a body nested deeper than MAX_BODY_DEPTH, or holding a NUL
character, is a 400 before anything reads it. Python's json module recurses once per
level (so a few thousand levels raise RecursionError, a 500), and PostgreSQL stores no
NUL (a DataError, a 500, after the request was accepted)."""

import io
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.schemas import MAX_JSON_DEPTH, json_problem

# Room above a stored document's limit for the body around it ({"input": …}).
MAX_BODY_DEPTH = MAX_JSON_DEPTH + 8
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = b"[{", b"]}", ord('"'), ord("\\")


def nesting_depth(body: bytes, limit: int) -> int:
    """How deep `body`'s arrays and objects nest, counted without parsing (brackets
    inside strings are not counted); stops counting once past `limit`."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in _CLOSE:
            depth -= 1
    return deepest


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        if nesting_depth(body, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_BODY_DEPTH} levels")
        data = super().parse(io.BytesIO(body), media_type, parser_context)
        if (problem := json_problem(data, MAX_BODY_DEPTH)) is not None:
            raise ParseError(f"JSON holding {problem}" if "NUL" in problem else problem)
        return data
