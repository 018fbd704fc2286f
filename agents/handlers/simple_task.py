"""`simple-task`: a few steps and one info checkpoint; it never pauses."""

from typing import Any

from jobs.runtime import JobContext, handler


@handler("simple-task", description="A few steps and an info checkpoint; never pauses.")
def simple_task(ctx: JobContext) -> dict[str, Any]:
    description = str(ctx.input.get("description", "simple task"))
    data = ctx.input.get("data", {})
    prepared = ctx.step(
        "prepare",
        lambda: {
            "description": description,
            "fields": sorted(data) if isinstance(data, dict) else [],
        },
    )
    ctx.emit("progress", {"percent": 33, "message": "prepared"})
    processed = ctx.step("process", lambda: {"field_count": len(prepared["fields"])})
    ctx.emit("progress", {"percent": 66, "message": "processed"})
    ctx.checkpoint(
        "summary",
        kind="info",
        title=f"Processed {description}",
        payload={"prepared": prepared, "processed": processed},
    )
    return ctx.step("finish", lambda: {"description": description, **processed})
