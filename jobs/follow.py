"""Following a job's events from a synchronous process (the command line): live from
Redis, with the stored rows filling anything published before we subscribed."""

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings

from jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobStatus
from jobs.runtime.events import channel_name

FINAL_EVENTS = frozenset(f"job.{status}" for status in TERMINAL_STATUSES)


def follow(job_id: str, *, until: Callable[[str], bool] | None = None,
           timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """Yield the job's events ({"seq", "kind", "data"}) in order, once each, until the
    job's status satisfies `until` (default: it ended) or `timeout` passes."""
    import redis

    done = until or (lambda status: status in TERMINAL_STATUSES)
    deadline = None if timeout is None else time.monotonic() + timeout
    client = redis.Redis.from_url(settings.COUNTERSIGN_EVENTS_REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    last = 0

    def stored() -> Iterator[dict[str, Any]]:
        nonlocal last
        for event in JobEvent.objects.filter(job_id=job_id, seq__gt=last).order_by("seq"):
            last = event.seq
            yield {"seq": event.seq, "kind": event.kind, "data": event.data}

    try:
        pubsub.subscribe(channel_name(job_id))
        yield from stored()
        next_check = 0.0
        while deadline is None or time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message is not None:
                live = json.loads(message["data"])
                if live["seq"] > last:
                    last = live["seq"]
                    yield live
                if live["kind"] in FINAL_EVENTS or live["kind"] == "job.waiting":
                    next_check = 0.0
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
                if status is None or done(status):
                    yield from stored()  # the run writes its last events after the status
                    return
    finally:
        pubsub.close()
        client.close()


def settled(status: str) -> bool:
    """Ended, or paused for a person (a chat shows the checkpoint and goes on waiting
    only if asked to)."""
    return status in TERMINAL_STATUSES or status == JobStatus.WAITING
