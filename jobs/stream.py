"""GET /api/v1/jobs/{id}/stream/ — Server-Sent Events for one job.

An async view (run it under ASGI: uvicorn), so an open stream holds no thread. It
follows the job's events by the rules of jobs/follow.py, from after `Last-Event-ID`
(or `?after=`) until the job ends. Keep-alive comments keep proxies from closing an
idle stream.

Live events come from the process's one Redis subscriber (core/pubsub.py), which
subscribes the job's channel while any stream of the process follows the job. The rows
are read again whenever live events were lost (a client too slow for its buffer, Redis
dropped), and every ROWS_SECONDS while they cannot be trusted (Redis down, or back so
recently that publishers may still be skipping it).
"""

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from accounts.roles import Capability, can, organization_of
from accounts.services import token_authenticate
from core import pubsub
from jobs.follow import (
    CLOSING_EVENTS,
    SETTLE_SECONDS,
    EventCursor,
    ended,
    event_number,
    job_state,
)
from jobs.models import Job, JobEvent
from jobs.runtime.events import channel_name
from jobs.selectors import EVENTS_PAGE, job_events

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

KEEPALIVE_SECONDS = 15.0
# The end of a job normally arrives as a live job.* event; this re-check of the status
# only covers a missed publication, so it can be slow.
STATUS_CHECK_SECONDS = 10.0
# How long a new stream waits for its subscription before replaying the rows anyway (it
# reads them again once subscribed).
SUBSCRIBE_WAIT_SECONDS = 2.0
# While live events cannot be trusted (Redis down or just back), the rows every this often.
ROWS_SECONDS = 1.0
# Bytes of live events a stream may fall behind by (a slow client) before it drops them and
# reads the rows instead: bounds its memory, and never holds up the other streams.
BUFFERED_BYTES = 1024 * 1024


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _db_call(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run `fn` on the shared thread pool and close its database connection after.

    Not thread-sensitive: under ASGI that gives each request its own thread, and so
    its own database connection, held for the life of the stream: a hundred open
    streams would use up PostgreSQL's connections (bench/streaming.py found this)."""

    def closing(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(closing, thread_sensitive=False)


@_db_call
def _authorize(request: HttpRequest, job_id: str) -> Job | JsonResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    user = token_authenticate(raw.strip()) if scheme.lower() in ("bearer", "token") else None
    if user is None and not header:
        user = request.user if request.user.is_authenticated else None
    if user is None:
        return _error(
            401,
            "not_authenticated",
            "Authentication credentials were not provided or are not valid.",
        )
    organization = organization_of(user)
    if organization is None or not can(user, Capability.VIEW):
        return _error(403, "permission_denied", "Your role does not allow this.")
    job = Job.objects.filter(pk=job_id, organization=organization).first()
    if job is None:
        return _error(404, "not_found", "No such job.")
    return job


@_db_call
def _stored(job_id: str, after: int) -> list[JobEvent]:
    return job_events(job_id, after=after)


@_db_call
def _state(job_id: str) -> Job | None:
    return job_state(job_id)


def _frame(event: dict[str, Any]) -> str:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n"


async def _catch_up(job_id: str, cursor: EventCursor) -> AsyncIterator[dict[str, Any]]:
    """Every stored event after the cursor (and in its gaps), a page at a time."""
    while True:
        page = await _stored(job_id, cursor.read_after)
        for event in cursor.stored(page):
            yield event
        if len(page) < EVENTS_PAGE:
            return


async def _events(job_id: str, after: int) -> AsyncIterator[str]:
    """The rules of jobs.follow, asynchronously: an open stream holds no thread, and its
    live events come from the process's one Redis subscriber (core/pubsub.py)."""
    cursor = EventCursor(last=after)
    listener = pubsub.listen(
        settings.COUNTERSIGN_EVENTS_REDIS_URL, channel_name(job_id), limit=BUFFERED_BYTES
    )
    loop = asyncio.get_running_loop()
    try:
        if listener is not None:  # subscribed before the replay: nothing falls between
            await listener.wait_live(SUBSCRIBE_WAIT_SECONDS)
            listener.stale = False
        async for event in _catch_up(job_id, cursor):
            yield _frame(event)
        now = loop.time()
        next_check = now + STATUS_CHECK_SECONDS
        quiet_since = now
        next_read = now + ROWS_SECONDS if _polling(listener) else math.inf
        while True:
            wake_at = min(next_check, next_read, quiet_since + KEEPALIVE_SECONDS)
            if listener is None:
                await asyncio.sleep(wake_at - loop.time())
            else:
                await listener.wait(wake_at - loop.time())
            now = loop.time()
            sent = False
            closing = False
            stale = listener is not None and listener.stale
            if stale or now >= next_read:
                # Live events were lost (a slow client, Redis dropped) or cannot be
                # trusted yet: the rows. After a loss, once more a little later, for an
                # event published before its transaction committed.
                if listener is not None:
                    listener.stale = False
                next_read = now + ROWS_SECONDS if stale or _polling(listener) else math.inf
                async for event in _catch_up(job_id, cursor):
                    sent = True
                    closing = closing or event["kind"] in CLOSING_EVENTS
                    yield _frame(event)
            for raw in listener.take() if listener is not None else ():
                live, closes = cursor.live(raw)
                closing = closing or closes
                if live is not None:
                    sent = True
                    yield _frame(live)
            if sent:
                quiet_since = now
            elif now - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = now
                yield ": keep-alive\n\n"
            if closing:
                next_check = now  # check the status now, not at the next interval
            if now >= next_check:
                next_check = now + STATUS_CHECK_SECONDS
                if cursor.missing:  # fill the gap from the rows
                    async for event in _catch_up(job_id, cursor):
                        yield _frame(event)
                job = await _state(job_id)
                if job is None or ended(job):
                    settle_by = loop.time() + SETTLE_SECONDS
                    while True:
                        async for event in _catch_up(job_id, cursor):
                            yield _frame(event)
                        if job is None or cursor.closed(job.status) or loop.time() >= settle_by:
                            return
                        await asyncio.sleep(0.05)
    finally:
        if listener is not None:
            listener.close()


def _polling(listener: pubsub.Listener | None) -> bool:
    """Whether live events may be missing without a sign: none (live events off), not
    subscribed (Redis down), or Redis back so recently that publishers may still be
    skipping it (core.redis.best_effort backs off for RETRY_SECONDS)."""
    return listener is None or not listener.live or listener.recovering()


async def job_stream(request: HttpRequest, job_id: str) -> HttpResponseBase:
    authorized = await _authorize(request, job_id)
    if isinstance(authorized, JsonResponse):
        return authorized
    after = event_number(request.headers.get("Last-Event-ID") or request.GET.get("after") or "0")
    if after is None:
        return _error(400, "invalid", "Last-Event-ID / after must be a non-negative integer.")
    response = StreamingHttpResponse(
        _events(str(authorized.pk), after), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
