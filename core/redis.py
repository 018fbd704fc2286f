"""One Redis client per URL in each process, made on first use and shared by its
threads (live events, metrics, worker heartbeats). A forked child (a Celery pool
process) starts with none: it must not share its parent's sockets, nor a lock a
parent thread held at the fork."""

import os
import threading
from typing import Any

_lock = threading.Lock()
_clients: dict[tuple[str, float], Any] = {}


def redis_client(url: str, *, timeout: float) -> Any:
    with _lock:
        client = _clients.get((url, timeout))
        if client is None:
            import redis

            client = _clients[(url, timeout)] = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return client


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
