"""Worker liveness for `agent_workers_up`: each worker's main process refreshes a
Redis key with a short expiry while it runs, so a dead worker disappears from the
metric within `TTL_SECONDS` whichever way it died."""

import json
import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from core.metrics.recorder import client, key

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0
TTL_SECONDS = 35
_stop = threading.Event()


def worker_key(hostname: str) -> str:
    return key(f"worker:{hostname}")


def beat_once(hostname: str, concurrency: int | None) -> None:
    client().set(worker_key(hostname), json.dumps({"concurrency": concurrency}), ex=TTL_SECONDS)


def _loop(hostname: str, concurrency: int | None) -> None:
    while True:
        try:
            beat_once(hostname, concurrency)
        except Exception:  # Redis away: the worker shows as down, which is the truth we know
            logger.warning("worker heartbeat not recorded", exc_info=True)
        if _stop.wait(INTERVAL_SECONDS):
            return


@worker_ready.connect
def _start(sender: Any = None, **kwargs: Any) -> None:
    if not settings.COUNTERSIGN_METRICS_REDIS_URL:
        return
    hostname = getattr(sender, "hostname", "worker")
    concurrency = getattr(sender.controller, "concurrency", None) if sender else None
    _stop.clear()
    threading.Thread(
        target=_loop, args=(hostname, concurrency), name="metrics-heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def _stop_beating(sender: Any = None, **kwargs: Any) -> None:
    _stop.set()
    if not settings.COUNTERSIGN_METRICS_REDIS_URL:
        return
    try:
        client().delete(worker_key(getattr(sender, "hostname", "worker")))
    except Exception:
        logger.warning("worker heartbeat not removed; it expires in %ss", TTL_SECONDS)
