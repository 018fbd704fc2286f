"""A deterministic provider with no network: the default when no key is configured,
so `make run` and the tests work anywhere.

It answers with a fixed sentence about the task. To exercise tools it follows one
directive: a line `/tool NAME {json arguments}` in the latest user message makes it
call that tool once (before any tool result came back), then answer with the results."""

import hashlib
import json
import re
import struct
import zlib
from typing import Any

from agents.providers.base import (
    Completion,
    GeneratedImage,
    Message,
    OnChunk,
    ProviderError,
    ToolCall,
    ToolSpec,
)

DIRECTIVE = re.compile(r"^/tool\s+([\w-]+)\s*(\{.*\})?\s*$", re.MULTILINE)
MODEL = "offline-echo"


def _words(text: str) -> int:
    return len(text.split())


class OfflineProvider:
    name = "offline"

    def generate_image(self, *, model: str, prompt: str, size: str) -> GeneratedImage:
        """A deterministic picture: the same prompt and size give the same PNG."""
        return GeneratedImage(offline_png(prompt, size), model or "offline-image")

    def complete(
        self,
        *,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        parameters: dict[str, Any],
        on_chunk: OnChunk | None = None,
    ) -> Completion:
        tokens_in = sum(_words(str(m.get("content") or "")) for m in messages)
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        results = [m for m in messages[last_user + 1 :] if m["role"] == "tool"]
        request = str(messages[last_user]["content"]) if last_user >= 0 else ""
        call = self._directive(request, tools) if not results else None
        if call is not None:
            return Completion(
                text="",
                tool_calls=[call],
                tokens_in=tokens_in,
                tokens_out=1,
                model=model or MODEL,
                finish_reason="tool_calls",
            )
        if results:
            text = "Done. Tool results: " + "; ".join(str(m["content"])[:200] for m in results)
        else:
            task = " ".join(DIRECTIVE.sub("", request).split())[:200]
            text = f"Offline answer: I would now work on: {task}"
        limit = parameters.get("max_tokens")
        words = text.split(" ")
        if limit:
            words = words[: int(limit)]
        text = " ".join(words)
        if on_chunk is not None:
            for i, word in enumerate(words):
                on_chunk(word if i == 0 else " " + word)
        finish = "length" if limit and len(words) == int(limit) else "stop"
        return Completion(
            text=text,
            tokens_in=tokens_in,
            tokens_out=len(words),
            model=model or MODEL,
            finish_reason=finish,
        )

    def _directive(self, request: str, tools: list[ToolSpec]) -> ToolCall | None:
        match = DIRECTIVE.search(request)
        if match is None:
            return None
        name, raw = match.group(1), match.group(2) or "{}"
        if name not in {tool["name"] for tool in tools}:
            return None  # the model would not call a tool it was not offered
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ProviderError(f"offline: bad /tool arguments: {exc}", retryable=False) from exc
        return ToolCall(id=f"call_{name}_1", name=name, arguments=arguments)


def offline_png(prompt: str, size: str) -> bytes:
    """A PNG of `size` ("256x256") in bands of colours taken from the prompt's hash."""
    width, height = (int(part) for part in size.split("x"))
    digest = hashlib.sha256(prompt.encode()).digest()
    rows = []
    for y in range(height):
        band = digest[(y * 8 // height) * 3 : (y * 8 // height) * 3 + 3]
        rows.append(b"\x00" + band * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
