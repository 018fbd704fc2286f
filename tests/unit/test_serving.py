"""core.serving: async views on the event loop, everything else through WSGI on threads."""

import asyncio
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from core.serving import HybridApplication, is_async_view, wsgi_environ

STREAM = f"/api/v1/jobs/{uuid.uuid4()}/stream/"


def http_scope(path: str, **extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    scope.update(extra)
    return scope


class Recorder:
    """Fake WSGI and ASGI apps that note which thread served what."""

    def __init__(self, body: Iterator[bytes] | list[bytes] | None = None) -> None:
        self.body = body if body is not None else [b'{"ok": true}']
        self.wsgi_calls: list[tuple[dict[str, Any], str, bytes]] = []
        self.asgi_scopes: list[dict[str, Any]] = []
        self.closed_in: list[str] = []

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = environ["wsgi.input"].read()
        self.wsgi_calls.append((environ, threading.current_thread().name, body))
        start_response("201 Created", [("Content-Type", "application/json"), ("X-A", "b")])
        recorder = self

        class Response:
            streaming = not isinstance(recorder.body, list)

            def __iter__(self) -> Iterator[bytes]:
                return iter(recorder.body)

            def close(self) -> None:  # Django's request_finished happens here
                recorder.closed_in.append(threading.current_thread().name)

        return Response()

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.asgi_scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"stream"})


def serve(
    app: HybridApplication, scope: dict[str, Any], chunks: list[bytes] | None = None
) -> list[Mapping[str, Any]]:
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks or [b""]) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_only_async_views_resolve_as_async():
    assert is_async_view(STREAM)
    assert not is_async_view("/api/v1/jobs/")
    assert not is_async_view("/healthz")
    assert not is_async_view("/no/such/page/")  # Django answers 404 on a thread


def test_a_sync_view_is_served_through_wsgi_on_a_pool_thread():
    apps = Recorder()
    app = HybridApplication(asgi=apps.asgi, wsgi=apps.wsgi, threads=2)
    scope = http_scope(
        "/api/v1/jobs/",
        method="POST",
        query_string=b"status=queued&x=%C3%A9",
        headers=[
            (b"content-type", b"application/json"),
            (b"content-length", b"11"),
            (b"authorization", b"Bearer cs_x"),
            (b"accept", b"a"),
            (b"accept", b"b"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ],
    )

    sent = serve(app, scope, [b'{"a":', b" 1}"])

    ((environ, thread, body),) = apps.wsgi_calls
    assert thread.startswith("web") and thread != threading.current_thread().name
    assert body == b'{"a": 1}'  # every chunk of the body, read before the view runs
    assert environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/api/v1/jobs/"
    assert environ["QUERY_STRING"] == "status=queued&x=%C3%A9"
    assert environ["CONTENT_TYPE"] == "application/json" and environ["CONTENT_LENGTH"] == "11"
    assert environ["HTTP_AUTHORIZATION"] == "Bearer cs_x"
    assert environ["HTTP_ACCEPT"] == "a,b" and environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["SERVER_PORT"] == "8000"
    assert apps.closed_in == [thread]  # closed (connections given back) where it ran
    assert sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"application/json"), (b"x-a", b"b")],
        },
        {"type": "http.response.body", "body": b'{"ok": true}'},
    ]
    assert apps.asgi_scopes == []


def test_an_async_view_goes_to_the_asgi_handler_on_the_loop():
    apps = Recorder()
    app = HybridApplication(asgi=apps.asgi, wsgi=apps.wsgi, threads=2)

    sent = serve(app, http_scope(STREAM))

    assert [s["path"] for s in apps.asgi_scopes] == [STREAM] and apps.wsgi_calls == []
    assert sent[-1] == {"type": "http.response.body", "body": b"stream"}


def test_a_streaming_response_is_sent_chunk_by_chunk():
    apps = Recorder(body=iter([b"one", b"", b"two"]))
    app = HybridApplication(asgi=apps.asgi, wsgi=apps.wsgi, threads=1)

    sent = serve(app, http_scope("/api/v1/jobs/"))

    assert [m.get("body") for m in sent[1:]] == [b"one", b"two", b""]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert len(apps.closed_in) == 1


def test_a_chunked_body_without_a_length_is_read_whole():
    apps = Recorder()
    app = HybridApplication(asgi=apps.asgi, wsgi=apps.wsgi, threads=1)
    chunked = http_scope(
        "/api/v1/jobs/", method="POST", headers=[(b"transfer-encoding", b"chunked")]
    )

    serve(app, chunked, [b"abc", b"defg"])

    ((environ, _, body),) = apps.wsgi_calls
    assert environ["CONTENT_LENGTH"] == "7" and body == b"abcdefg"


def test_a_client_that_leaves_before_its_body_is_not_served():
    apps = Recorder()
    app = HybridApplication(asgi=apps.asgi, wsgi=apps.wsgi, threads=1)
    sent: list[Mapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(http_scope("/api/v1/jobs/", method="POST"), receive, send))

    assert apps.wsgi_calls == [] and sent == []


def test_percent_escapes_in_the_path_are_decoded_as_a_wsgi_server_does():
    scope = http_scope("/caf\u00e9/x y", raw_path=b"/caf%C3%A9/x%20y", root_path="")
    environ = wsgi_environ(scope, body=None)
    assert environ["PATH_INFO"] == "/caf\u00e9/x y".encode().decode("latin-1")
    mounted = wsgi_environ(http_scope("/app/api/", root_path="/app", raw_path=b"/app/api/"), None)
    assert (mounted["SCRIPT_NAME"], mounted["PATH_INFO"]) == ("/app", "/api/")
