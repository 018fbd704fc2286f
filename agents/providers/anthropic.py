"""Anthropic Messages, through the official SDK."""

from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent

from agents.providers.base import (
    Completion,
    GeneratedImage,
    Message,
    OnChunk,
    ProviderError,
    ToolCall,
    ToolSpec,
)
from agents.providers.errors import ErrorMapper, SdkErrors, parse_arguments

DEFAULT_MAX_TOKENS = 1024  # required by the API; the neutral parameters may not say
FINISH_REASONS = {
    "tool_use": "tool_calls",
    "end_turn": "stop",
    "max_tokens": "length",
    "stop_sequence": "stop",
}  # the rest (refusal, pause_turn, ...) as they are
SDK_ERRORS = SdkErrors(
    anthropic.APITimeoutError,
    anthropic.APIConnectionError,
    anthropic.APIStatusError,
    anthropic.APIError,
)


class AnthropicProvider:
    def __init__(
        self, *, name: str, api_key: str, base_url: str | None, timeout: float, key_env: str = ""
    ) -> None:
        self.name = name
        # max_retries=0: retry.py retries. An explicit api_key also keeps the SDK from
        # looking for profiles or federation credentials on disk or in the environment.
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )
        self._errors = ErrorMapper(
            name, SDK_ERRORS, str(self._client.base_url), timeout, api_key, key_env
        )

    def generate_image(self, *, model: str, prompt: str, size: str) -> GeneratedImage:
        raise ProviderError(f"{self.name} does not generate images", retryable=False)

    def complete(
        self,
        *,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        parameters: dict[str, Any],
        on_chunk: OnChunk | None = None,
    ) -> Completion:
        system, turns = to_anthropic(messages)
        request: dict[str, Any] = {
            "model": model,
            "messages": turns,
            "max_tokens": parameters.get("max_tokens") or DEFAULT_MAX_TOKENS,
        }
        # This SDK (2.x) has no temperature, top_p or penalties; an agent configured
        # with them is refused when saved (registry.parameter_error).
        if stop := parameters.get("stop"):
            request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if system:
            request["system"] = system
        if tools:
            request["tools"] = [
                {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "input_schema": tool["parameters"],
                }
                for tool in tools
            ]
        try:
            if on_chunk is None:
                return self._completion(self._client.messages.create(**request))
            with self._client.messages.create(**request, stream=True) as stream:
                return self._streamed(stream, on_chunk)
        except (anthropic.APIError, httpx2.RequestError) as error:
            failure = self._errors.translate(error, model=model)
        raise failure  # outside the except: no SDK error (whose text may quote the key) chained

    def _completion(self, message: AnthropicMessage) -> Completion:
        text = "".join(block.text for block in message.content if block.type == "text")
        calls = [
            ToolCall(block.id, block.name, dict(block.input))
            for block in message.content
            if block.type == "tool_use"
        ]
        return Completion(
            text=text,
            tool_calls=calls,
            tokens_in=message.usage.input_tokens,
            tokens_out=message.usage.output_tokens,
            model=message.model,
            finish_reason=finish_reason(message.stop_reason),
        )

    def _streamed(
        self, stream: anthropic.Stream[RawMessageStreamEvent], on_chunk: OnChunk
    ) -> Completion:
        text: list[str] = []
        calls: dict[int, _PartialCall] = {}  # by content block index
        model = stop_reason = ""
        tokens_in = tokens_out = 0
        for event in stream:
            if event.type == "message_start":
                model, tokens_in = event.message.model, event.message.usage.input_tokens
            elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                calls[event.index] = _PartialCall(event.content_block.id, event.content_block.name)
            elif event.type == "content_block_delta":
                if event.delta.type == "text_delta" and event.delta.text:
                    text.append(event.delta.text)
                    on_chunk(event.delta.text)
                elif event.delta.type == "input_json_delta" and event.index in calls:
                    calls[event.index].json.append(event.delta.partial_json)
            elif event.type == "message_delta":
                tokens_out = event.usage.output_tokens
                if event.usage.input_tokens is not None:  # newer servers restate it here
                    tokens_in = event.usage.input_tokens
                stop_reason = event.delta.stop_reason or stop_reason
        tool_calls = [
            ToolCall(call.id, call.name, parse_arguments(self.name, call.name, "".join(call.json)))
            for _, call in sorted(calls.items())
        ]
        return Completion(
            text="".join(text),
            tool_calls=tool_calls,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            model=model,
            finish_reason=finish_reason(stop_reason),
        )


@dataclass
class _PartialCall:
    id: str
    name: str
    json: list[str] = field(default_factory=list)


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", stop_reason or "")


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Neutral messages (see base.py) as the `system` text and the Messages API turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the tool_result blocks of the open user turn
    for message in messages:
        role, content = message["role"], message.get("content", "")
        if role == "system":
            system.append(content)
            continue
        if role == "tool":  # a run of tool messages answers one assistant turn: one user turn
            if results is None:
                results = []
                turns.append({"role": "user", "content": results})
            results.append(
                {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": content}
            )
            continue
        results = None
        if role == "assistant" and message.get("tool_calls"):
            blocks = [{"type": "text", "text": content}] if content else []
            blocks += [
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["name"],
                    "input": call["arguments"],
                }
                for call in message["tool_calls"]
            ]
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": role, "content": content})
    return "\n\n".join(system), turns
