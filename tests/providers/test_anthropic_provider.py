"""AnthropicProvider through the real Anthropic SDK, against the local server
(tests/llm_server.py)."""

import time

import pytest

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import Completion, ProviderError, ToolCall
from agents.providers.registry import get_provider
from agents.providers.retry import with_retries
from tests.llm_server import ErrorReply, LLMServer, Reply, ToolCallReply

KEY = "sk-ant-test-SECRET-0123456789abcdef"
MODEL = "claude-sonnet-5-5"
USER = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def provider(server: LLMServer, *, timeout: float = 5.0) -> AnthropicProvider:
    return AnthropicProvider(
        name="anthropic", api_key=KEY, base_url=server.anthropic_base_url, timeout=timeout
    )


def complete(server: LLMServer, **kwargs) -> Completion:
    arguments = {"model": MODEL, "messages": USER, "tools": [], "parameters": {}, **kwargs}
    return provider(server).complete(**arguments)


def test_plain_completion_with_usage(llm_server: LLMServer):
    llm_server.script(
        Reply(text="Sunny, 21°C.", tokens_in=23, tokens_out=6, model="claude-sonnet-5-5-20260901")
    )

    completion = complete(llm_server)

    assert completion == Completion(
        text="Sunny, 21°C.",
        tool_calls=[],
        tokens_in=23,
        tokens_out=6,
        model="claude-sonnet-5-5-20260901",
        finish_reason="stop",
    )
    [request] = llm_server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.api_key == KEY  # this SDK sends it as a bearer token, not x-api-key
    assert request.headers["anthropic-version"]
    assert request.body == {"model": MODEL, "messages": USER, "max_tokens": 1024}


def test_the_registry_builds_it_from_the_environment(
    llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.anthropic_base_url)
    llm_server.script(Reply(text="via the registry"))

    completion = get_provider("anthropic").complete(
        model=MODEL, messages=USER, tools=[], parameters={}
    )

    assert completion.text == "via the registry"
    assert llm_server.requests[0].api_key == KEY


def test_parameters(llm_server: LLMServer):
    llm_server.script(Reply(text="ok"))

    complete(
        llm_server, parameters={"max_tokens": 200, "stop": "END", "temperature": 0.3, "top_p": 0.9}
    )

    body = llm_server.requests[0].body
    assert (body["max_tokens"], body["stop_sequences"]) == (200, ["END"])
    assert "temperature" not in body and "top_p" not in body  # gone from this SDK's API


def test_streamed_text_reaches_on_chunk_in_order(llm_server: LLMServer):
    pieces = ["Sunny", ", 21", "°C", " in Paris."]
    llm_server.script(
        Reply(
            text="".join(pieces),
            chunks=pieces,
            tokens_in=17,
            tokens_out=9,
            model="claude-sonnet-5-5-20260901",
        )
    )
    received: list[str] = []

    completion = complete(llm_server, on_chunk=received.append)

    assert received == pieces
    assert completion.text == "".join(received) == "Sunny, 21°C in Paris."
    assert (completion.tokens_in, completion.tokens_out) == (17, 9)
    assert (completion.model, completion.finish_reason) == ("claude-sonnet-5-5-20260901", "stop")
    assert llm_server.requests[0].body["stream"] is True


def test_tool_calls_not_streamed(llm_server: LLMServer):
    llm_server.script(
        Reply(
            text="Checking.",
            tool_calls=[
                ToolCallReply("get_weather", {"city": "Paris"}, id="toolu_a"),
                ToolCallReply("get_weather", {"city": "Lyon", "units": ["C", "F"]}, id="toolu_b"),
            ],
        )
    )

    completion = complete(llm_server, tools=[WEATHER])

    assert completion.text == "Checking."
    assert completion.tool_calls == [
        ToolCall("toolu_a", "get_weather", {"city": "Paris"}),
        ToolCall("toolu_b", "get_weather", {"city": "Lyon", "units": ["C", "F"]}),
    ]
    assert completion.finish_reason == "tool_calls"
    assert llm_server.requests[0].body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER["parameters"],
        }
    ]


def test_tool_calls_streamed_with_partial_json_split_across_deltas(llm_server: LLMServer):
    llm_server.script(
        Reply(
            text="Let me check. ",
            tool_calls=[
                ToolCallReply("get_weather", {"city": "Paris", "days": 3}, id="toolu_a", pieces=5),
                ToolCallReply("get_weather", {"city": "Nice"}, id="toolu_b", pieces=4),
            ],
            tokens_in=40,
            tokens_out=30,
        )
    )
    received: list[str] = []

    completion = complete(llm_server, tools=[WEATHER], on_chunk=received.append)

    assert completion.tool_calls == [
        ToolCall("toolu_a", "get_weather", {"city": "Paris", "days": 3}),
        ToolCall("toolu_b", "get_weather", {"city": "Nice"}),
    ]
    assert received == ["Let ", "me ", "check. "] and completion.text == "Let me check. "
    assert (completion.tokens_in, completion.tokens_out, completion.finish_reason) == (
        40,
        30,
        "tool_calls",
    )


def test_invalid_streamed_tool_json_is_a_clear_permanent_error(llm_server: LLMServer):
    llm_server.script(Reply(tool_calls=[ToolCallReply("get_weather", '{"city": "Par')]))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, tools=[WEATHER], on_chunk=lambda _: None)

    assert raised.value.retryable is False
    assert "anthropic returned invalid JSON arguments for tool 'get_weather'" in str(raised.value)


def test_messages_are_converted_as_the_server_sees_them(llm_server: LLMServer):
    llm_server.script(Reply(text="It is sunny in both."))
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris and Nice?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                ToolCall("toolu_a", "get_weather", {"city": "Paris"}).as_dict(),
                ToolCall("toolu_b", "get_weather", {"city": "Nice"}).as_dict(),
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "sunny too"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [ToolCall("toolu_c", "get_weather", {"city": "Lyon"}).as_dict()],
        },
        {"role": "tool", "tool_call_id": "toolu_c", "content": "rain"},
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Summary?"},
    ]

    complete(llm_server, messages=messages, tools=[WEATHER])

    body = llm_server.requests[0].body
    assert body["system"] == "You are terse.\n\nAnswer in one line."
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Nice?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_b",
                    "name": "get_weather",
                    "input": {"city": "Nice"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "sunny too"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_c",
                    "name": "get_weather",
                    "input": {"city": "Lyon"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_c", "content": "rain"}],
        },
        {"role": "user", "content": "Summary?"},
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("refusal", "refusal"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_stop_reasons(llm_server: LLMServer, stop_reason: str, finish_reason: str, streamed: bool):
    llm_server.script(Reply(text="...", finish_reason=stop_reason))

    completion = complete(llm_server, on_chunk=(lambda _: None) if streamed else None)

    assert completion.finish_reason == finish_reason


def test_429_waits_the_retry_after_seconds_then_succeeds(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(
            429,
            "Number of request tokens has exceeded your rate limit.",
            headers={"retry-after": "3"},
        ),
        Reply(text="second time lucky"),
    )
    sleeps: list[float] = []
    errors: list[ProviderError] = []

    completion = with_retries(
        lambda: complete(llm_server),
        attempts=3,
        sleep=sleeps.append,
        on_retry=lambda _attempt, error, _wait: errors.append(error),
    )

    assert completion.text == "second time lucky"
    assert sleeps == [3.0]
    assert (errors[0].retryable, errors[0].status, errors[0].retry_after) == (True, 429, 3.0)
    assert "exceeded your rate limit" in str(errors[0])
    assert [r.headers["x-stainless-retry-count"] for r in llm_server.requests] == ["0", "0"]


@pytest.mark.parametrize("status", [500, 529])
def test_server_error_then_success(llm_server: LLMServer, status: int):
    llm_server.script(
        ErrorReply(status, "Overloaded", headers={"retry-after-ms": "250"}), Reply(text="recovered")
    )
    sleeps: list[float] = []

    completion = with_retries(lambda: complete(llm_server), attempts=3, sleep=sleeps.append)

    assert completion.text == "recovered"
    assert sleeps == [0.25]
    assert len(llm_server.requests) == 2


def test_timeout_is_retryable(llm_server: LLMServer):
    llm_server.script(Reply(text="too late", delay=10))
    started = time.monotonic()

    with pytest.raises(ProviderError) as raised:
        provider(llm_server, timeout=0.5).complete(
            model=MODEL, messages=USER, tools=[], parameters={}
        )

    assert time.monotonic() - started < 5  # the client's timeout, not the server's delay
    assert raised.value.retryable is True and raised.value.status is None
    assert str(raised.value) == "anthropic did not answer within 0.5s (timeout)"


def test_401_names_the_variable_and_never_the_key(llm_server: LLMServer):
    llm_server.script(ErrorReply(401, f"invalid x-api-key {KEY}"))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server)

    error = raised.value
    assert (error.retryable, error.status) == (False, 401)
    assert str(error) == "anthropic rejected the API key (401): check ANTHROPIC_API_KEY"
    assert error.__cause__ is None and error.__context__ is None


def test_404_names_the_model(llm_server: LLMServer):
    llm_server.script(ErrorReply(404, "model: claude-nope"))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, model="claude-nope")

    assert (raised.value.retryable, raised.value.status) == (False, 404)
    assert str(raised.value) == (
        "model 'claude-nope' not found at anthropic (404): model: claude-nope"
    )


def test_403_and_400_quote_the_server_without_the_key(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(403, f"key {KEY} may not use this model"),
        ErrorReply(400, "messages: roles must alternate"),
    )

    with pytest.raises(ProviderError) as denied:
        complete(llm_server)
    with pytest.raises(ProviderError) as refused:
        complete(llm_server)

    assert str(denied.value) == (
        "anthropic denied access (403): key [redacted] may not use "
        "this model; check that ANTHROPIC_API_KEY may use model "
        f"'{MODEL}'"
    )
    assert str(refused.value) == (
        "anthropic refused the request (400): messages: roles must alternate"
    )
    assert not denied.value.retryable and not refused.value.retryable


def test_a_proxy_error_page_is_retryable(llm_server: LLMServer):
    llm_server.script(ErrorReply(502, body="<html><body><h1>502 Bad Gateway</h1></body></html>"))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server)

    assert (raised.value.retryable, raised.value.status) == (True, 502)
    assert "502 Bad Gateway" in str(raised.value)


def test_overloaded_in_the_middle_of_a_stream_is_retryable(llm_server: LLMServer):
    llm_server.script(ErrorReply(529, "Overloaded", mid_stream=True))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, on_chunk=lambda _: None)

    assert raised.value.retryable is True
    assert str(raised.value) == "anthropic failed mid-response (overloaded_error): Overloaded"
