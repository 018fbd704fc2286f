"""Fixtures of the workflow tests."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Remote:
    """A small HTTP server: GET /ok answers JSON, /flaky fails its first N calls, /nul
    and /nul.json answer a NUL character."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures_left = 0
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                remote.calls.append(self.path)
                if self.path.startswith("/flaky") and remote.failures_left > 0:
                    remote.failures_left -= 1
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                body = json.dumps({"path": self.path, "ok": True}).encode()
                kind = "application/json"
                if self.path.startswith("/nul"):  # what PostgreSQL cannot store
                    body, kind = (
                        (b'{"s": "a\\u0000b", "t": "x\\ud800y", "e": "\\ud83d\\ude00"}', kind)
                        if "json" in self.path
                        else (
                            b"a\x00b",
                            "text/plain",
                        )
                    )
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def remote(settings) -> Iterator[Remote]:
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = ["127.0.0.1"]
    server = Remote()
    yield server
    server.server.shutdown()
