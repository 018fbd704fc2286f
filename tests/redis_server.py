"""A private `redis-server` process on a free port, for tests that stop and restart Redis
or read its client list (the machine's Redis is shared with other processes)."""

import socket
import subprocess
import time
from collections.abc import Sequence

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.options: Sequence[str] = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def subscribers(self) -> list[dict[str, str]]:
        """The connections holding channel subscriptions (CLIENT LIST, `sub` > 0)."""
        with self.client() as client:
            return [c for c in client.client_list() if int(c.get("sub", 0)) > 0]

    def numsub(self, channel: str) -> int:
        with self.client() as client:
            return int(client.pubsub_numsub(channel)[0][1])
