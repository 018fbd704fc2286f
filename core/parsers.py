"""The API's JSON parser: a body nested deeper than MAX_BODY_DEPTH, or holding a NUL
character, is a 400 before anything reads it. Python's json module recurses once per
level (a few thousand levels raise RecursionError, which DRF's parser lets through as
a 500), and PostgreSQL stores no NUL (a DataError, a 500, after the request was
accepted)."""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.schemas import MAX_JSON_DEPTH, json_problem

# Room above a stored document's limit for the body around it ({"input": …}).
MAX_BODY_DEPTH = MAX_JSON_DEPTH + 8


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {MAX_BODY_DEPTH} levels") from None
        if (problem := json_problem(data, MAX_BODY_DEPTH)) is not None:
            raise ParseError(f"JSON holding {problem}" if "NUL" in problem else problem)
        return data
