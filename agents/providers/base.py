"""One interface for every LLM provider: messages + tools + parameters in, a
Completion out, text chunks streamed to a callback as they arrive.

Messages are provider-neutral dicts, converted by each provider:

    {"role": "system" | "user" | "assistant" | "tool", "content": str,
     "tool_calls": [ToolCall.as_dict(), ...],   # assistant only, optional
     "tool_call_id": str}                       # tool only

Tools are {"name", "description", "parameters": JSON schema}.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
ToolSpec = dict[str, Any]
OnChunk = Callable[[str], None]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""
    finish_reason: str = ""  # "stop", "tool_calls", "length", ... as the provider says

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tool_calls": [call.as_dict() for call in self.tool_calls]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Completion":
        return cls(**{**data, "tool_calls": [ToolCall(**c) for c in data["tool_calls"]]})


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes  # the image file (PNG)
    model: str


class ProviderError(Exception):
    """A call that failed. `retryable` errors (429, 5xx, connection, timeout) may
    succeed later, after `retry_after` seconds if the server said so; the others
    (400, 401, 403, 404) will not, and their message says what a person should fix."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class Provider(Protocol):
    name: str

    def complete(
        self,
        *,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        parameters: dict[str, Any],
        on_chunk: OnChunk | None = None,
    ) -> Completion:
        """One call, no retries (the caller retries retryable errors: see retry.py).
        With `on_chunk`, the response is streamed and each text delta passed on."""
        ...

    def generate_image(self, *, model: str, prompt: str, size: str) -> GeneratedImage:
        """One image from a prompt (ProviderError if the provider makes none)."""
        ...
