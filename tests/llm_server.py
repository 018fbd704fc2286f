"""A local HTTP server that speaks the OpenAI Chat Completions and Anthropic Messages
wire protocols (JSON and server-sent events), so the real SDKs can be tested end to end.

Tests script its replies and read back what the SDK sent:

    with LLMServer() as server:
        server.script(Reply(text="Hello", tokens_in=12, tokens_out=3),
                      ErrorReply(429, "slow down", headers={"Retry-After": "2"}))
        ... OpenAI(base_url=server.openai_base_url) / Anthropic(base_url=server.anthropic_base_url)
        assert server.requests[0].body["model"] == "gpt-4o"

Replies are used in order, whichever API asks; a request with none left gets a 500
saying "no scripted reply". Every reply is rendered in the format of the API that
received it (POST /v1/chat/completions or POST /v1/messages), streamed when the
request says `"stream": true`.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.providers.offline import offline_png

OPENAI_PATH = "/v1/chat/completions"
IMAGES_PATH = "/v1/images/generations"  # answered with a picture drawn from the prompt
ANTHROPIC_PATH = "/v1/messages"


@dataclass(frozen=True)
class ToolCallReply:
    name: str
    arguments: dict[str, Any] | str  # a str is sent as-is (e.g. to send invalid JSON)
    id: str = ""  # default: call_N (OpenAI) or toolu_N (Anthropic)
    pieces: int = 3  # streamed, the arguments JSON is split into this many deltas


@dataclass(frozen=True)
class Reply:
    """A successful completion."""

    text: str = ""
    tool_calls: Sequence[ToolCallReply] = ()
    chunks: Sequence[str] | None = None  # streamed text deltas; default: one per word
    tokens_in: int = 11
    tokens_out: int = 7
    model: str | None = None  # default: the model the request named
    finish_reason: str | None = None  # in the API's own words; default from tool_calls
    delay: float = 0.0  # seconds before answering (to make a client time out)
    chunk_delay: float = 0.0  # seconds between streamed events (a model writing)

    def text_chunks(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return re.findall(r"\S+\s*|\s+", self.text)  # "Hi there" -> ["Hi ", "there"]


@dataclass(frozen=True)
class ErrorReply:
    """An error, with the body shaped as the receiving API shapes its errors."""

    status: int
    message: str = "scripted error"
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. Retry-After
    type: str | None = None  # the API's error type; default from the status
    code: str | None = None  # OpenAI's error code; default from the status
    body: Any = None  # sent instead of the API-shaped body (a str as text/html)
    mid_stream: bool = False  # streamed requests: 200, a first event, then the error event
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the decoded JSON (or the raw text if it was not JSON)

    @property
    def api_key(self) -> str | None:
        """The key as sent: `x-api-key`, or a bearer token (what both SDKs send now)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


class LLMServer:
    """The server, on 127.0.0.1 and a free port, serving from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply | ErrorReply] = deque()
        self._requests: list[RecordedRequest] = []
        self._released = threading.Event()  # set to cut delayed replies short
        self._ids = itertools.count(1)
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.llm = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url  # the Anthropic SDK adds /v1/messages itself

    def start(self) -> LLMServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def script(self, *replies: Reply | ErrorReply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        """Forget scripted replies and recorded requests; wake handlers still delaying."""
        with self._lock:
            self._replies.clear()
            self._requests.clear()
            self._released.set()
            self._released = threading.Event()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._replies)

    def _take(self, request: RecordedRequest) -> tuple[Reply | ErrorReply | None, threading.Event]:
        with self._lock:
            self._requests.append(request)
            reply = self._replies.popleft() if self._replies else None
            return reply, self._released

    def next_id(self) -> int:
        return next(self._ids)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    llm: LLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hang up; that's fine
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the real APIs
    timeout = 60  # drop idle keep-alive connections eventually
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean

    def _serve(self) -> None:
        path = self.path.split("?")[0]
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = RecordedRequest(
            self.command, path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        dialect: _Dialect = ANTHROPIC if path.startswith(ANTHROPIC_PATH) else OPENAI
        if (self.command, path) == ("POST", IMAGES_PATH) and isinstance(body, dict):
            with self.server.llm._lock:
                self.server.llm._requests.append(request)
            picture = offline_png("server:" + str(body.get("prompt")), str(body.get("size")))
            self._send_json(
                200, {"created": 0, "data": [{"b64_json": base64.b64encode(picture).decode()}]}
            )
            return
        if (self.command, path) not in {("POST", OPENAI_PATH), ("POST", ANTHROPIC_PATH)}:
            self._send_error(dialect, ErrorReply(404, f"no route for {self.command} {path}"))
            return
        reply, released = self.server.llm._take(request)
        if reply is None:
            self._send_error(
                dialect,
                ErrorReply(
                    500,
                    f"no scripted reply for {self.command} {path}: the test scripted fewer "
                    f"replies than the code under test made requests",
                    type="server_error",
                ),
            )
            return
        if reply.delay:
            released.wait(reply.delay)
        try:
            self._answer(dialect, reply, request)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out)

    def _answer(
        self, dialect: _Dialect, reply: Reply | ErrorReply, request: RecordedRequest
    ) -> None:
        model = str(request.body.get("model", "")) if isinstance(request.body, dict) else ""
        if isinstance(reply, ErrorReply):
            if reply.mid_stream and request.stream:
                self._send_events(dialect.error_stream(reply, model, self.server.llm))
            else:
                self._send_error(dialect, reply)
        elif request.stream:
            self._send_events(
                dialect.stream(reply, model, request.body, self.server.llm), pause=reply.chunk_delay
            )
        else:
            self._send_json(200, dialect.json(reply, model, self.server.llm))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_error(self, dialect: _Dialect, error: ErrorReply) -> None:
        if isinstance(error.body, str):
            self._send_bytes(error.status, error.body.encode(), "text/html", error.headers)
        else:
            body = error.body if error.body is not None else dialect.error_body(error)
            self._send_json(error.status, body, error.headers)

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] = {}) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self._send_common_headers(headers)
        self.wfile.write(data)

    def _send_events(self, frames: Iterator[str], pause: float = 0.0) -> None:
        """Server-sent events, one HTTP chunk per event, so each arrives on its own
        (`pause` seconds apart)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._send_common_headers({})
        for index, frame in enumerate(frames):
            if pause and index:
                time.sleep(pause)
            data = frame.encode()
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _send_common_headers(self, headers: Mapping[str, str]) -> None:
        request_id = f"req_{self.server.llm.next_id()}"
        self.send_header("x-request-id", request_id)  # OpenAI's name
        self.send_header("request-id", request_id)  # Anthropic's
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


def _split(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` non-empty parts (fewer if it is shorter)."""
    size = max(1, -(-len(text) // max(pieces, 1)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _arguments(call: ToolCallReply) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


class _Dialect:
    def json(self, reply: Reply, model: str, llm: LLMServer) -> dict[str, Any]:
        raise NotImplementedError

    def stream(
        self, reply: Reply, model: str, body: dict[str, Any], llm: LLMServer
    ) -> Iterator[str]:
        raise NotImplementedError

    def error_body(self, error: ErrorReply) -> dict[str, Any]:
        raise NotImplementedError

    def error_stream(self, error: ErrorReply, model: str, llm: LLMServer) -> Iterator[str]:
        raise NotImplementedError


class _OpenAI(_Dialect):
    TYPES = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        403: "permission_error",
        404: "invalid_request_error",
        429: "requests",
    }
    CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}

    def json(self, reply: Reply, model: str, llm: LLMServer) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{llm.next_id()}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments(call)},
                }
                for call in reply.tool_calls
            ]
        return {
            **self._envelope(reply, model, llm, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish(reply),
                }
            ],
            "usage": self._usage(reply),
        }

    def stream(
        self, reply: Reply, model: str, body: dict[str, Any], llm: LLMServer
    ) -> Iterator[str]:
        envelope = self._envelope(reply, model, llm, "chat.completion.chunk")
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                **envelope,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return self._event({**data, "usage": None} if with_usage else data)

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in reply.text_chunks():
            yield chunk({"content": piece})
        for index, call in enumerate(reply.tool_calls):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id or f"call_{llm.next_id()}",
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _split(_arguments(call), call.pieces):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self._finish(reply))
        if with_usage:
            yield self._event({**envelope, "choices": [], "usage": self._usage(reply)})
        yield "data: [DONE]\n\n"

    def error_body(self, error: ErrorReply) -> dict[str, Any]:
        kind = (
            error.type
            or self.TYPES.get(error.status)
            or ("server_error" if error.status >= 500 else "invalid_request_error")
        )
        return {
            "error": {
                "message": error.message,
                "type": kind,
                "param": None,
                "code": error.code or self.CODES.get(error.status),
            }
        }

    def error_stream(self, error: ErrorReply, model: str, llm: LLMServer) -> Iterator[str]:
        envelope = self._envelope(Reply(), model, llm, "chat.completion.chunk")
        yield self._event(
            {
                **envelope,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        )
        yield self._event(self.error_body(error))

    @staticmethod
    def _envelope(reply: Reply, model: str, llm: LLMServer, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{llm.next_id()}",
            "object": kind,
            "created": int(time.time()),
            "model": reply.model or model,
            "system_fingerprint": "fp_llm_server",
        }

    @staticmethod
    def _finish(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int]:
        return {
            "prompt_tokens": reply.tokens_in,
            "completion_tokens": reply.tokens_out,
            "total_tokens": reply.tokens_in + reply.tokens_out,
        }

    @staticmethod
    def _event(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data)}\n\n"


class _Anthropic(_Dialect):
    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        504: "timeout_error",
        529: "overloaded_error",
    }

    def json(self, reply: Reply, model: str, llm: LLMServer) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        for call in reply.tool_calls:
            arguments: Any = call.arguments
            if isinstance(arguments, str):
                with contextlib.suppress(ValueError):  # invalid JSON goes as the string it is
                    arguments = json.loads(arguments)
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id or f"toolu_{llm.next_id()}",
                    "name": call.name,
                    "input": arguments,
                }
            )
        return {
            **self._message(reply, model, llm),
            "content": content,
            "stop_reason": self._stop_reason(reply),
            "usage": {"input_tokens": reply.tokens_in, "output_tokens": reply.tokens_out},
        }

    def stream(
        self, reply: Reply, model: str, body: dict[str, Any], llm: LLMServer
    ) -> Iterator[str]:
        yield self._event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **self._message(reply, model, llm),
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": reply.tokens_in, "output_tokens": 1},
                },
            },
        )
        yield self._event("ping", {"type": "ping"})
        index = 0
        if reply.text:
            yield from self._block(
                index,
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": piece} for piece in reply.text_chunks()],
            )
            index += 1
        for call in reply.tool_calls:
            start = {
                "type": "tool_use",
                "id": call.id or f"toolu_{llm.next_id()}",
                "name": call.name,
                "input": {},
            }
            yield from self._block(
                index,
                start,
                [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in _split(_arguments(call), call.pieces)
                ],
            )
            index += 1
        yield self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.tokens_out},
            },
        )
        yield self._event("message_stop", {"type": "message_stop"})

    def error_body(self, error: ErrorReply) -> dict[str, Any]:
        kind = (
            error.type
            or self.TYPES.get(error.status)
            or ("api_error" if error.status >= 500 else "invalid_request_error")
        )
        return {
            "type": "error",
            "error": {"type": kind, "message": error.message},
            "request_id": "req_llm_server",
        }

    def error_stream(self, error: ErrorReply, model: str, llm: LLMServer) -> Iterator[str]:
        yield self._event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **self._message(Reply(), model, llm),
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                },
            },
        )
        yield self._event("error", self.error_body(error))

    def _block(
        self, index: int, start: dict[str, Any], deltas: list[dict[str, Any]]
    ) -> Iterator[str]:
        yield self._event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
        for delta in deltas:
            yield self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    @staticmethod
    def _message(reply: Reply, model: str, llm: LLMServer) -> dict[str, Any]:
        return {
            "id": f"msg_{llm.next_id()}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or model,
            "stop_sequence": None,
        }

    @staticmethod
    def _stop_reason(reply: Reply) -> str:
        return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"


OPENAI = _OpenAI()
ANTHROPIC = _Anthropic()
