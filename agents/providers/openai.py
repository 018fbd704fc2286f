"""OpenAI Chat Completions, through the official SDK: openai itself and the servers that
speak its protocol (groq, openrouter, ollama, vllm)."""

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

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

PASSED_PARAMETERS = (
    "temperature",
    "max_tokens",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "stop",
)
SDK_ERRORS = SdkErrors(
    openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError, openai.APIError
)


class OpenAIProvider:
    def __init__(
        self, *, name: str, api_key: str, base_url: str | None, timeout: float, key_env: str = ""
    ) -> None:
        self.name = name
        # max_retries=0: retry.py retries, with our backoff and the server's Retry-After.
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )
        self._errors = ErrorMapper(
            name, SDK_ERRORS, str(self._client.base_url), timeout, api_key, key_env
        )

    def complete(
        self,
        *,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        parameters: dict[str, Any],
        on_chunk: OnChunk | None = None,
    ) -> Completion:
        request: dict[str, Any] = {
            "model": model,
            "messages": [to_openai(message) for message in messages],
            **{key: parameters[key] for key in PASSED_PARAMETERS if key in parameters},
        }
        if tools:
            request["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool["name"],
                        "description": tool.get("description", ""),
                        "parameters": tool["parameters"],
                    },
                }
                for tool in tools
            ]
        try:
            if on_chunk is None:
                return self._completion(self._client.chat.completions.create(**request))
            with self._client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            ) as stream:
                return self._streamed(stream, on_chunk)
        except (openai.APIError, httpx2.RequestError) as error:
            failure = self._errors.translate(error, model=model)
        raise failure  # outside the except: no SDK error (whose text may quote the key) chained

    def generate_image(self, *, model: str, prompt: str, size: str) -> GeneratedImage:
        """The Images API, one PNG, returned inline (no second request for a URL)."""
        try:
            response = self._client.images.generate(
                model=model, prompt=prompt, size=size, n=1, response_format="b64_json"
            )
        except (openai.APIError, httpx2.RequestError) as error:
            failure = self._errors.translate(error, model=model)
        else:
            if not response.data or not response.data[0].b64_json:
                raise ProviderError(f"{self.name} returned no image", retryable=False)
            return GeneratedImage(base64.b64decode(response.data[0].b64_json), model)
        raise failure

    def _completion(self, response: ChatCompletion) -> Completion:
        if not response.choices:
            raise ProviderError(f"{self.name} returned no choices", retryable=False)
        choice = response.choices[0]
        calls = [
            ToolCall(
                call.id,
                call.function.name,
                self._arguments(call.function.name, call.function.arguments),
            )
            for call in choice.message.tool_calls or []
            if call.type == "function"
        ]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            tool_calls=calls,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            model=response.model,
            finish_reason=choice.finish_reason or "",
        )

    def _streamed(
        self, stream: openai.Stream[ChatCompletionChunk], on_chunk: OnChunk
    ) -> Completion:
        text: list[str] = []
        calls: dict[int, _PartialCall] = {}  # by index: a call's pieces arrive interleaved
        model = finish_reason = ""
        tokens_in = tokens_out = 0
        for chunk in stream:
            model = chunk.model or model
            if chunk.usage:  # the last chunk, with include_usage; its choices are empty
                tokens_in, tokens_out = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
            for choice in chunk.choices[:1]:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    on_chunk(choice.delta.content)
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, _PartialCall())
                    call.id = call.id or delta.id or ""
                    if delta.function:
                        call.name = call.name or delta.function.name or ""
                        call.arguments.append(delta.function.arguments or "")
                finish_reason = choice.finish_reason or finish_reason
        tool_calls = [
            ToolCall(call.id, call.name, self._arguments(call.name, "".join(call.arguments)))
            for _, call in sorted(calls.items())
        ]
        return Completion(
            text="".join(text),
            tool_calls=tool_calls,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            model=model,
            finish_reason=finish_reason,
        )

    def _arguments(self, tool: str, raw: str) -> dict[str, Any]:
        return parse_arguments(self.name, tool, raw)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def to_openai(message: Message) -> dict[str, Any]:
    """A neutral message (see base.py) as Chat Completions wants it."""
    role = message["role"]
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message["tool_call_id"],
            "content": message.get("content", ""),
        }
    if role == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message.get("content") or None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                for call in message["tool_calls"]
            ],
        }
    return {"role": role, "content": message.get("content", "")}
