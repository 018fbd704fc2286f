"""Redis for what every process shares: live events, metrics, worker heartbeats.

One client per URL (and timeout) in each process, made on first use and shared by its
threads. A forked child (a Celery pool process) starts with none: it must not share its
parent's sockets, nor a lock a parent thread held at the fork.

`best_effort` is for work that must never stop the work it describes (publishing a
live event, adding to a counter): after a failure, that use (`what`) of that Redis is
not tried again for RETRY_SECONDS, so an outage costs one timeout per use per back-off,
not one per event, and is logged once per back-off. Each use backs off on its own: a
slow metrics pipeline does not pause live events.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_SECONDS = 30.0

_lock = threading.Lock()
_clients: dict[tuple[str, float], Any] = {}
_down_until: dict[tuple[str, str], float] = {}


def redis_client(url: str, *, timeout: float) -> Any:
    with _lock:
        client = _clients.get((url, timeout))
        if client is None:
            import redis

            client = _clients[(url, timeout)] = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        return client


def best_effort(
    url: str, action: Callable[[Any], T], *, what: str, timeout: float = 1.0
) -> T | None:
    """`action(client)`, or None when `url` is empty, this use of it is backing off, or it
    fails now (which starts a back-off of RETRY_SECONDS for this use of this URL)."""
    if not url or time.monotonic() < _down_until.get((url, what), 0.0):
        return None
    try:
        return action(redis_client(url, timeout=timeout))
    except Exception:  # an unreachable or failing Redis: the work goes on without it
        _down_until[(url, what)] = time.monotonic() + RETRY_SECONDS
        logger.warning(
            "%s paused for %.0fs: Redis is not reachable", what, RETRY_SECONDS, exc_info=True
        )
        return None


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _clients.clear()
    _down_until.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
