"""GET /api/v1/jobs/{id}/stream/ — Server-Sent Events for one job.

An async view (run it under ASGI: uvicorn), so an open stream holds no thread. It
follows the job's events by the rules of jobs/follow.py, from after `Last-Event-ID`
(or `?after=`) until the job ends. Keep-alive comments keep proxies from closing an
idle stream.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from accounts.roles import Capability, can, organization_of
from accounts.services import token_authenticate
from jobs.follow import SETTLE_SECONDS, EventCursor, ended, event_number, job_state
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


async def _catch_up(job_id: str, cursor: EventCursor) -> AsyncIterator[str]:
    while True:
        page = await _stored(job_id, cursor.read_after)
        for event in cursor.stored(page):
            yield _frame(event)
        if len(page) < EVENTS_PAGE:
            return


async def _events(job_id: str, after: int) -> AsyncIterator[str]:
    """The rules of jobs.follow, asynchronously: an open stream holds no thread."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.COUNTERSIGN_EVENTS_REDIS_URL)
    pubsub = client.pubsub()
    cursor = EventCursor(last=after)
    try:
        await pubsub.subscribe(channel_name(job_id))  # before the replay: nothing falls between
        async for frame in _catch_up(job_id, cursor):
            yield frame
        loop = asyncio.get_running_loop()
        next_check = loop.time() + STATUS_CHECK_SECONDS
        quiet_since = loop.time()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            now = loop.time()
            if message is not None:
                quiet_since = now
                event, closing = cursor.live(message["data"])
                if event is not None:
                    yield _frame(event)
                if closing:
                    next_check = now  # check the status now, not at the next interval
            elif now - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = now
                yield ": keep-alive\n\n"
            if now >= next_check:
                next_check = now + STATUS_CHECK_SECONDS
                if cursor.missing:  # fill the gap from the rows
                    async for frame in _catch_up(job_id, cursor):
                        yield frame
                job = await _state(job_id)
                if job is None or ended(job):
                    settle_by = loop.time() + SETTLE_SECONDS
                    while True:
                        async for frame in _catch_up(job_id, cursor):
                            yield frame
                        if job is None or cursor.closed(job.status) or loop.time() >= settle_by:
                            return
                        await asyncio.sleep(0.05)
    finally:
        await pubsub.aclose()
        await client.aclose()


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
