"""OpenAPI additions: every operation documents the error shape it can return."""

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {
                        "oneOf": [{"type": "array", "items": {}}, {"type": "object"}]
                    },
                },
                "decision": {"type": "object", "description": "409: the existing decision"},
            },
        }
    },
}
ERRORS = {
    "400": "Invalid input; `fields` maps each field to its messages.",
    "401": "Not authenticated.",
    "403": "Authenticated, but the role does not allow this.",
    "404": "Not found (or in another organization).",
    "409": "Conflicts with the current state (already decided, already finished).",
}


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
