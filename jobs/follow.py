"""Following a job's events as they happen: live from Redis, with the stored rows
filling anything published before the follower subscribed or missed since.

One set of rules, used by the SSE stream (jobs/stream.py, async), the chat command
and `enqueue --wait` (`follow`, sync): subscribe first, then replay the rows, then
relay live events, each event once; events that were never published (a live number
that jumps ahead) are read from the rows at the next status check; check the job's
status when a closing event arrives (and now and then, for a missed publication);
once the status says stop, read the rows until the status's closing event is there
and no gap is left (a run writes its final status just before its last events) or
SETTLE_SECONDS pass.

The SSE stream takes its live events from its process's one Redis subscriber
(core/pubsub.py) and reads the rows whenever that says events were lost; `follow` here,
one follower per process, keeps a subscription of its own.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from core.numbers import bigint
from core.redis import redis_client
from jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobStatus
from jobs.runtime.events import channel_name, event_dict
from jobs.selectors import EVENTS_PAGE, job_events

# Events after which the job's status is worth reading at once.
CLOSING_EVENTS = frozenset(f"job.{status}" for status in (*TERMINAL_STATUSES, JobStatus.WAITING))
SETTLE_SECONDS = 1.0
POLL_SECONDS = 0.2

logger = logging.getLogger(__name__)


def ended(job: Job) -> bool:
    return job.status in TERMINAL_STATUSES


def event_number(raw: str) -> int | None:
    """A client's event number (`?after=`, Last-Event-ID), as stored: a bigint, or None."""
    return bigint(raw)


def paused_or_ended(job: Job) -> bool:
    """Ended, or waiting for something outside the job (a person, another job, a free
    slot). A job's own timer (`ctx.sleep`, a retry back-off) ends by itself."""
    return ended(job) or (job.status == JobStatus.WAITING and job.wait_reason != "timer")


@dataclass
class EventCursor:
    """What a follower has seen: the last event number and kind, and the numbers it
    skipped (a live event that jumped ahead: some were not published, say while Redis
    was backing off), which the next read of the rows fills in."""

    last: int = 0
    last_kind: str = ""
    missing: set[int] = field(default_factory=set)

    @property
    def read_after(self) -> int:
        """Read stored rows after this number (before the first gap, if there is one)."""
        return min(self.missing) - 1 if self.missing else self.last

    def stored(self, events: Iterable[JobEvent]) -> list[dict[str, Any]]:
        taken, highest = [], 0
        for event in events:
            highest = max(highest, event.seq)
            if event.seq in self.missing:
                self.missing.discard(event.seq)
                taken.append(event_dict(event))
            elif event.seq > self.last:
                taken.append(self._take(event_dict(event)))
        # A gap below rows that are stored now is not coming (its number went to another
        # writer's event, which the rows show); stop waiting for it.
        self.missing = {seq for seq in self.missing if seq > highest}
        return taken

    def live(self, raw: bytes | str) -> tuple[dict[str, Any] | None, bool]:
        """(the event if it is new, whether it is worth reading the status now)."""
        event = json.loads(raw)
        closing = event["kind"] in CLOSING_EVENTS
        if event["seq"] <= self.last:
            return None, closing
        self.missing.update(range(self.last + 1, event["seq"]))
        return self._take(event), closing or bool(self.missing)

    def closed(self, status: str) -> bool:
        """Has the event that ends `status` been seen (the rows are complete)?"""
        return self.last_kind == f"job.{status}" and not self.missing

    def _take(self, event: dict[str, Any]) -> dict[str, Any]:
        self.last, self.last_kind = event["seq"], event["kind"]
        return event


def job_state(job_id: str) -> Job | None:
    return Job.objects.only("status", "wait_reason").filter(pk=job_id).first()


def ended_among(job_ids: list[str]) -> set[str]:
    """Which of these jobs have ended or are gone (deleted), a thousand ids a query."""
    found: dict[str, str] = {}
    for start in range(0, len(job_ids), 1000):
        rows = Job.objects.filter(pk__in=job_ids[start : start + 1000]).values_list("pk", "status")
        found.update((str(pk), status) for pk, status in rows)
    return {
        job_id for job_id in job_ids if job_id not in found or found[job_id] in TERMINAL_STATUSES
    }


def _subscribe(job_id: str) -> Any:
    """A pub/sub subscription to the job's live events, or None when live events are
    off or their Redis cannot be reached (the follower then reads the rows)."""
    url = settings.COUNTERSIGN_EVENTS_REDIS_URL
    if not url:
        return None
    try:
        pubsub = redis_client(url, timeout=5.0).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel_name(job_id))
    except RedisError as exc:
        logger.warning("following job %s from the database only: %s", job_id, exc)
        return None
    return pubsub


def follow(
    job_id: str,
    *,
    until: Callable[[Job], bool] = ended,
    timeout: float | None = None,
    check_every: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Yield the job's events ({"seq", "kind", "data", "created_at"}) in order, once
    each, until `until(job)` holds (default: it ended). TimeoutError after `timeout`.
    Without live events (no Redis), the rows are read every POLL_SECONDS instead."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pubsub = _subscribe(job_id)  # before the replay: nothing falls between
    cursor = EventCursor()
    try:
        yield from catch_up(job_id, cursor)
        next_check = 0.0
        while True:
            closing = False
            if pubsub is not None:
                try:
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                except RedisError:
                    pubsub = None  # Redis went away: go on from the rows
                    message = None
                if message is not None:
                    event, closing = cursor.live(message["data"])
                    if event is not None:
                        yield event
            else:
                time.sleep(POLL_SECONDS)
                for event in catch_up(job_id, cursor):
                    closing = closing or event["kind"] in CLOSING_EVENTS
                    yield event
            if closing or pubsub is None:
                next_check = 0.0
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + check_every
                if cursor.missing:
                    yield from catch_up(job_id, cursor)
                job = job_state(job_id)
                if job is None or until(job):
                    yield from _settle(job_id, cursor, job)
                    return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still going after {timeout}s")
    finally:
        if pubsub is not None:
            with contextlib.suppress(RedisError):
                pubsub.close()


def catch_up(job_id: str, cursor: EventCursor) -> Iterator[dict[str, Any]]:
    """Every stored event after the cursor (and in its gaps), a page at a time."""
    while True:
        page = job_events(job_id, after=cursor.read_after)
        yield from cursor.stored(page)
        if len(page) < EVENTS_PAGE:
            return


def _settle(job_id: str, cursor: EventCursor, job: Job | None) -> Iterator[dict[str, Any]]:
    settle_by = time.monotonic() + SETTLE_SECONDS
    while True:
        yield from catch_up(job_id, cursor)
        if job is None or cursor.closed(job.status) or time.monotonic() >= settle_by:
            return
        time.sleep(0.05)
