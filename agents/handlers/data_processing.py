"""`data-processing`: approve the plan, transform, approve the result, then save.

Input: {"records": [{...}, ...], "operations": [...]} where an operation is
{"op": "filter", "field": f, "equals": v} | {"op": "uppercase", "field": f}
| {"op": "sum", "field": f}. Without operations the records are only counted.
"""

import json
from typing import Any

from jobs.runtime import FileSpec, JobContext, NonRetryableError, handler, write_files

OPERATIONS = {"filter", "uppercase", "sum"}


def validate(records: Any, operations: Any) -> dict[str, Any]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise NonRetryableError("records must be a list of objects")
    if not isinstance(operations, list):
        raise NonRetryableError("operations must be a list")
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in OPERATIONS or "field" not in op:
            raise NonRetryableError(f"bad operation {op!r}; known: {sorted(OPERATIONS)}")
    return {
        "record_count": len(records),
        "operations": operations,
        "fields": sorted({k for r in records for k in r}),
        "sample": records[:5],
    }


def transform(records: list[dict[str, Any]], operations: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [dict(r) for r in records]
    totals: dict[str, float] = {}
    for op in operations:
        field = op["field"]
        if op["op"] == "filter":
            rows = [r for r in rows if r.get(field) == op.get("equals")]
        elif op["op"] == "uppercase":
            rows = [{**r, field: str(r.get(field, "")).upper()} for r in rows]
        elif op["op"] == "sum":
            totals[field] = sum(float(r.get(field) or 0) for r in rows)
    return {"rows": rows, "totals": totals}


PLAN_SCHEMA = {
    "type": "object",
    "required": ["operations"],
    "properties": {
        "operations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["op", "field"],
                "properties": {"op": {"enum": sorted(OPERATIONS)}, "field": {"type": "string"}},
            },
        }
    },
}
MAX_REVIEW_ROWS = 500


RESULT_SCHEMA = {
    "type": "object",
    "required": ["rows"],
    "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
}


def validate_result_edit(checkpoint: Any, payload: dict[str, Any]) -> dict[str, list[str]]:
    """A truncated preview cannot be edited: the rows the reviewer never saw would be lost."""
    if checkpoint.payload.get("truncated"):
        return {
            "rows": [
                f"this result has {checkpoint.payload['row_count']} rows and only "
                f"the first 100 are shown; approve or reject it as it is"
            ]
        }
    return {}


@handler("data-processing", description="Plan, approve, transform, approve, save.")
def data_processing(ctx: JobContext) -> dict[str, Any]:
    records = ctx.input.get("records", [])
    plan = ctx.step("plan", lambda: validate(records, ctx.input.get("operations", [])))
    approved_plan = ctx.checkpoint(
        "approve-plan",
        title=f"Process {plan['record_count']} record(s)",
        description="Approve (or edit) the operations before they run.",
        payload=plan,
        payload_schema=PLAN_SCHEMA,
    )
    operations = approved_plan.payload["operations"]
    result = ctx.step(
        "transform", lambda: transform(records, validate(records, operations)["operations"])
    )
    ctx.emit("progress", {"percent": 60, "message": f"{len(result['rows'])} row(s) out"})
    truncated = len(result["rows"]) > MAX_REVIEW_ROWS
    decision = ctx.checkpoint(
        "approve-result",
        title=f"Save {len(result['rows'])} row(s)",
        description="Approve (or edit) the result before it is saved.",
        payload={
            "columns": sorted({k for r in result["rows"] for k in r}),
            "rows": result["rows"][:100] if truncated else result["rows"],
            "row_count": len(result["rows"]),
            "truncated": truncated,
            "totals": result["totals"],
        },
        payload_schema=RESULT_SCHEMA,
        payload_validator="agents.handlers.data_processing.validate_result_edit",
    )
    if decision.edited:
        result = {"rows": decision.payload["rows"], "totals": result["totals"]}
    saved = ctx.step(
        "save",
        lambda: write_files(
            ctx.workspace,
            [FileSpec(path="result.json", content=json.dumps(result, indent=2, sort_keys=True))],
        ),
    )
    return {
        "row_count": len(result["rows"]),
        "totals": result["totals"],
        "saved": saved,
        "edited": approved_plan.edited or decision.edited,
        "approved_by": decision.decided_by,
    }
