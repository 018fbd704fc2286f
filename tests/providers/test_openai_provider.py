"""OpenAIProvider through the real OpenAI SDK, against the local server (tests/llm_server.py)."""

import email.utils
import socket
import time

import pytest

from agents.providers.base import Completion, ProviderError, ToolCall
from agents.providers.openai import OpenAIProvider
from agents.providers.registry import get_provider
from agents.providers.retry import with_retries
from tests.llm_server import ErrorReply, LLMServer, Reply, ToolCallReply

KEY = "sk-test-SECRET-0123456789abcdef"
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


def provider(server: LLMServer, *, name: str = "openai", timeout: float = 5.0) -> OpenAIProvider:
    return OpenAIProvider(name=name, api_key=KEY, base_url=server.openai_base_url, timeout=timeout)


def complete(server: LLMServer, **kwargs) -> Completion:
    arguments = {"model": "gpt-4o", "messages": USER, "tools": [], "parameters": {}, **kwargs}
    return provider(server).complete(**arguments)


def test_plain_completion_with_usage(llm_server: LLMServer):
    llm_server.script(
        Reply(text="Sunny, 21°C.", tokens_in=23, tokens_out=6, model="gpt-4o-2024-08-06")
    )

    completion = complete(
        llm_server, parameters={"temperature": 0.2, "max_tokens": 50, "stop": ["\n\n"], "seed": 7}
    )

    assert completion == Completion(
        text="Sunny, 21°C.",
        tool_calls=[],
        tokens_in=23,
        tokens_out=6,
        model="gpt-4o-2024-08-06",
        finish_reason="stop",
    )
    [request] = llm_server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.body == {
        "model": "gpt-4o",
        "messages": USER,
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["\n\n"],
    }  # no seed, no tools, no stream


def test_the_registry_builds_it_from_the_environment(
    llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_base_url)
    llm_server.script(Reply(text="via the registry"))

    completion = get_provider("openai").complete(
        model="gpt-4o", messages=USER, tools=[], parameters={}
    )

    assert completion.text == "via the registry"
    assert llm_server.requests[0].api_key == KEY


def test_streamed_text_reaches_on_chunk_in_order(llm_server: LLMServer):
    pieces = ["Sunny", ", 21", "°C", " in Paris."]
    llm_server.script(Reply(text="".join(pieces), chunks=pieces, tokens_in=17, tokens_out=9))
    received: list[str] = []

    completion = complete(llm_server, on_chunk=received.append)

    assert received == pieces
    assert completion.text == "".join(received) == "Sunny, 21°C in Paris."
    assert (completion.tokens_in, completion.tokens_out) == (17, 9)
    assert (completion.model, completion.finish_reason) == ("gpt-4o", "stop")
    body = llm_server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_tool_calls_not_streamed(llm_server: LLMServer):
    llm_server.script(
        Reply(
            tool_calls=[
                ToolCallReply("get_weather", {"city": "Paris"}, id="call_a"),
                ToolCallReply("get_weather", {"city": "Lyon", "units": ["C", "F"]}, id="call_b"),
            ]
        )
    )

    completion = complete(llm_server, tools=[WEATHER])

    assert completion.text == ""
    assert completion.tool_calls == [
        ToolCall("call_a", "get_weather", {"city": "Paris"}),
        ToolCall("call_b", "get_weather", {"city": "Lyon", "units": ["C", "F"]}),
    ]
    assert completion.finish_reason == "tool_calls"
    assert llm_server.requests[0].body["tools"] == [{"type": "function", "function": WEATHER}]


def test_tool_calls_streamed_with_arguments_split_across_deltas(llm_server: LLMServer):
    llm_server.script(
        Reply(
            text="Let me check. ",
            tool_calls=[
                ToolCallReply("get_weather", {"city": "Paris", "days": 3}, id="call_a", pieces=5),
                ToolCallReply("get_weather", {"city": "Nice"}, id="call_b", pieces=4),
            ],
            tokens_in=40,
            tokens_out=30,
        )
    )
    received: list[str] = []

    completion = complete(llm_server, tools=[WEATHER], on_chunk=received.append)

    assert completion.tool_calls == [
        ToolCall("call_a", "get_weather", {"city": "Paris", "days": 3}),
        ToolCall("call_b", "get_weather", {"city": "Nice"}),
    ]
    assert received == ["Let ", "me ", "check. "] and completion.text == "Let me check. "
    assert (completion.tokens_in, completion.tokens_out, completion.finish_reason) == (
        40,
        30,
        "tool_calls",
    )


def test_messages_are_converted_as_the_server_sees_them(llm_server: LLMServer):
    llm_server.script(Reply(text="It is sunny in both."))
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris and Nice?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                ToolCall("call_a", "get_weather", {"city": "Paris"}).as_dict(),
                ToolCall("call_b", "get_weather", {"city": "Nice"}).as_dict(),
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "sunny too"},
        {"role": "assistant", "content": "Anything else?"},
        {"role": "user", "content": "No."},
    ]

    complete(llm_server, messages=messages, tools=[WEATHER])

    assert llm_server.requests[0].body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris and Nice?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Nice"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "sunny too"},
        {"role": "assistant", "content": "Anything else?"},
        {"role": "user", "content": "No."},
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_invalid_tool_arguments_are_a_clear_permanent_error(llm_server: LLMServer, streamed: bool):
    llm_server.script(Reply(tool_calls=[ToolCallReply("get_weather", '{"city": "Par')]))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, tools=[WEATHER], on_chunk=(lambda _: None) if streamed else None)

    assert raised.value.retryable is False
    assert "invalid JSON arguments for tool 'get_weather'" in str(raised.value)


def test_429_waits_the_retry_after_seconds_then_succeeds(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(429, "Rate limit reached for gpt-4o", headers={"Retry-After": "2"}),
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
    assert sleeps == [2.0]
    [error] = errors
    assert (error.retryable, error.status, error.retry_after) == (True, 429, 2.0)
    assert "Rate limit reached for gpt-4o" in str(error)
    # Two requests, each the SDK's first try: only with_retries retried.
    assert [r.headers["x-stainless-retry-count"] for r in llm_server.requests] == ["0", "0"]


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"retry-after-ms": "1500"}, 1.5, 1.5),
        ({"Retry-After": "0.25"}, 0.25, 0.25),
        ({"Retry-After": "in a while"}, None, None),  # unreadable: retry.py backs off itself
    ],
    ids=["retry-after-ms", "fractional-seconds", "garbage"],
)
def test_retry_after_forms(llm_server: LLMServer, headers: dict[str, str], low, high):
    llm_server.script(ErrorReply(503, "overloaded", headers=headers))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server)

    assert raised.value.retryable and raised.value.status == 503
    assert raised.value.retry_after == low == high


def test_retry_after_as_an_http_date(llm_server: LLMServer):
    # Whole seconds on the wire: 3s ahead becomes a wait of a little over 2s to 3s.
    llm_server.script(
        ErrorReply(
            429, headers={"Retry-After": email.utils.formatdate(time.time() + 3, usegmt=True)}
        )
    )

    with pytest.raises(ProviderError) as raised:
        complete(llm_server)

    assert raised.value.retry_after is not None and 1.0 < raised.value.retry_after <= 3.0


def test_500_then_success(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(500, "The server had an error while processing your request."),
        Reply(text="recovered"),
    )
    sleeps: list[float] = []
    errors: list[ProviderError] = []

    completion = with_retries(
        lambda: complete(llm_server),
        attempts=3,
        sleep=sleeps.append,
        on_retry=lambda _attempt, error, _wait: errors.append(error),
    )

    assert completion.text == "recovered"
    assert len(sleeps) == 1 and sleeps[0] > 0  # backoff: the server gave no Retry-After
    assert (errors[0].status, errors[0].retryable, errors[0].retry_after) == (500, True, None)
    assert len(llm_server.requests) == 2


def test_timeout_is_retryable(llm_server: LLMServer):
    llm_server.script(Reply(text="too late", delay=10))
    slow = OpenAIProvider(
        name="openai", api_key=KEY, base_url=llm_server.openai_base_url, timeout=0.5
    )
    started = time.monotonic()

    with pytest.raises(ProviderError) as raised:
        slow.complete(model="gpt-4o", messages=USER, tools=[], parameters={})

    assert time.monotonic() - started < 5  # the client's timeout, not the server's delay
    assert raised.value.retryable is True and raised.value.status is None
    assert str(raised.value) == "openai did not answer within 0.5s (timeout)"


def test_unreachable_server_is_retryable():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = OpenAIProvider(
        name="vllm", api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", timeout=5
    )

    with pytest.raises(ProviderError) as raised:
        nowhere.complete(model="llama", messages=USER, tools=[], parameters={})

    assert raised.value.retryable is True
    assert str(raised.value).startswith(f"could not reach vllm at http://127.0.0.1:{port}/v1/: ")


@pytest.mark.parametrize(("name", "env"), [("openai", "OPENAI_API_KEY"), ("groq", "GROQ_API_KEY")])
def test_401_names_the_variable_and_never_the_key(llm_server: LLMServer, name: str, env: str):
    # What OpenAI really says: part of the key, quoted back.
    llm_server.script(
        ErrorReply(
            401,
            f"Incorrect API key provided: {KEY}. You can find your "
            "API key at https://platform.openai.com/account/api-keys.",
        )
    )

    with pytest.raises(ProviderError) as raised:
        provider(llm_server, name=name).complete(
            model="gpt-4o", messages=USER, tools=[], parameters={}
        )

    error = raised.value
    assert (error.retryable, error.status) == (False, 401)
    assert str(error) == f"{name} rejected the API key (401): check {env}"
    assert error.__cause__ is None and error.__context__ is None  # no SDK text chained on
    assert "SECRET" not in repr(error.args)


def test_404_names_the_model(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(404, "The model `gpt-nope` does not exist or you do not have access to it.")
    )

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, model="gpt-nope")

    assert (raised.value.retryable, raised.value.status) == (False, 404)
    assert str(raised.value).startswith("model 'gpt-nope' not found at openai (404): The model")


def test_400_quotes_the_server(llm_server: LLMServer):
    llm_server.script(ErrorReply(400, "Invalid value for 'temperature': must be at most 2."))

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, parameters={"temperature": 9})

    assert (raised.value.retryable, raised.value.status) == (False, 400)
    assert str(raised.value) == (
        "openai refused the request (400): Invalid value for 'temperature': must be at most 2."
    )


def test_out_of_quota_429_is_not_retried(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(
            429,
            "You exceeded your current quota.",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    )

    with pytest.raises(ProviderError) as raised:
        complete(llm_server)

    assert (raised.value.retryable, raised.value.status) == (False, 429)
    assert "out of quota" in str(raised.value)


def test_error_in_the_middle_of_a_stream(llm_server: LLMServer):
    llm_server.script(
        ErrorReply(200, "The server had an error", type="server_error", mid_stream=True)
    )

    with pytest.raises(ProviderError) as raised:
        complete(llm_server, on_chunk=lambda _: None)

    assert raised.value.retryable is True
    assert str(raised.value) == "openai failed mid-response (server_error): The server had an error"


def test_unscripted_request_says_so(llm_server: LLMServer):
    with pytest.raises(ProviderError) as raised:
        complete(llm_server)

    assert raised.value.status == 500 and "no scripted reply" in str(raised.value)
