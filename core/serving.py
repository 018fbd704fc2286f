"""One ASGI application for the whole site, with synchronous views on threads.

Django's own ASGI handler runs every synchronous view and middleware of a process on
one thread, one request at a time (thread-sensitive `sync_to_async`), with a few thread
hops per request: about 5 ms of CPU for a view that does nothing, and none of the time
a request waits for the database can serve another. The API is synchronous; only the
job event stream is async and must hold no thread while it waits.

So `HybridApplication` looks at the view a path resolves to:

- an async view (the event stream) goes to Django's ASGI handler, on the event loop;
- anything else goes to Django's WSGI handler on a pool of `threads` threads, so requests
  of one process overlap their database waits. The request body is read on the loop
  first; a response is sent in one piece, or chunk by chunk when it streams.

Everything Django does per request (middleware, `request_started`/`request_finished`
and so the return of database connections) runs in the thread that serves it.
"""

import asyncio
import contextvars
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.urls import Resolver404, get_resolver

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Coroutine[Any, Any, None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_async_view(path_info: str) -> bool:
    """Does `path_info` resolve to an async view? (Unknown paths are served on threads,
    where Django answers them 404.)"""
    try:
        match = get_resolver().resolve(path_info)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


def wsgi_environ(scope: Scope, body: Any) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP scope, as a WSGI server would build it."""
    root_path = scope.get("root_path", "")
    raw_path = scope.get("raw_path")
    if raw_path is not None:  # percent-decoded bytes as latin-1, as PEP 3333 has it
        path = unquote_to_bytes(raw_path.split(b"?", 1)[0]).decode("latin-1")
    else:
        path = scope["path"].encode().decode("latin-1")
    script_name = root_path.encode().decode("latin-1")
    if script_name and path.startswith(script_name):
        path = path[len(script_name) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            name = f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        if name in environ:  # repeated headers join, as Django's ASGI handler does
            value = f"{environ[name]}{'; ' if name == 'HTTP_COOKIE' else ','}{value}"
        environ[name] = value
    return environ


class _Response:
    """What a WSGI call answered, for the event loop to send."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.streamed = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return self._no_write

    @staticmethod
    def _no_write(data: bytes) -> None:
        raise NotImplementedError("the write() callable is not supported")


class HybridApplication:
    def __init__(self, *, asgi: ASGIApp, wsgi: WSGIApp, threads: int) -> None:
        self.asgi = asgi
        self.wsgi = wsgi
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_async_view(self._path_info(scope)):
            await self.asgi(scope, receive, send)
            return
        with tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE) as body:
            size = await self._read_body(receive, body)
            if size is None:
                return  # the client left before it finished sending
            environ = wsgi_environ(scope, body)
            # A chunked body has no Content-Length, and Django's WSGI request reads only
            # as many bytes as that says: the whole body is here, so say its size.
            environ.setdefault("CONTENT_LENGTH", str(size))
            loop = asyncio.get_running_loop()
            call = contextvars.copy_context().run
            response = await loop.run_in_executor(
                self.executor, call, self._serve, environ, loop, send
            )
        if not response.streamed:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response.headers,
                }
            )
            await send({"type": "http.response.body", "body": response.body})

    @staticmethod
    def _path_info(scope: Scope) -> str:
        path: str = scope["path"]
        root_path = scope.get("root_path", "")
        return path[len(root_path) :] if root_path and path.startswith(root_path) else path

    @staticmethod
    async def _read_body(receive: Receive, body: Any) -> int | None:
        """The request's body into `body`, rewound; its size, or None if the client
        disconnected first."""
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            size += body.write(message.get("body", b""))
            if not message.get("more_body", False):
                body.seek(0)
                return size

    def _serve(
        self, environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Send
    ) -> _Response:
        """In a pool thread: the whole WSGI call, closing included (Django's
        `request_finished`, which hands this thread's database connection back)."""
        response = _Response()
        iterable = self.wsgi(environ, response.start_response)
        try:
            if not getattr(iterable, "streaming", False):
                response.body = b"".join(iterable)
                return response
            response.streamed = True

            def push(message: Message) -> None:
                asyncio.run_coroutine_threadsafe(send(message), loop).result()

            push(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response.headers,
                }
            )
            for chunk in iterable:
                if chunk:
                    push({"type": "http.response.body", "body": chunk, "more_body": True})
            push({"type": "http.response.body", "body": b""})
            return response
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
