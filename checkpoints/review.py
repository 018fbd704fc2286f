"""Turning a checkpoint's payload into something a person can review."""

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DiffLine:
    text: str
    kind: str  # "add" | "del" | "hunk" | "meta" | "ctx"


def diff_lines(diff: str) -> list[DiffLine]:
    lines = []
    for text in diff.splitlines():
        if text.startswith(("+++", "---")):
            kind = "meta"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append(DiffLine(text, kind))
    return lines


def presentation(payload: Any) -> dict[str, Any]:
    """Which view fits: files with diffs, a tool call, a table, or plain JSON."""
    if isinstance(payload, dict):
        files = payload.get("files")
        if isinstance(files, list) and all(isinstance(f, dict) and "path" in f for f in files):
            return {
                "kind": "files",
                "files": [{**f, "diff_lines": diff_lines(str(f.get("diff", "")))} for f in files],
            }
        if "tool" in payload and "arguments" in payload:
            return {
                "kind": "tool",
                "tool": payload["tool"],
                "arguments": json.dumps(payload["arguments"], indent=2, sort_keys=True),
            }
        rows = payload.get("rows")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            columns = payload.get("columns") or sorted({k for r in rows for k in r})
            return {
                "kind": "table",
                "columns": columns,
                "rows": [[r.get(c, "") for c in columns] for r in rows[:200]],
                "total": payload.get("row_count", len(rows)),
            }
    return {"kind": "json"}
