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
    ended_among,
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
# The end of a job normally arrives as a live job.* event; this check of which followed
# jobs have ended (one read for all the streams of a process) only covers a missed
# publication, so it can be slow.
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


@_db_call
def _ended_among(job_ids: list[str]) -> set[str]:
    return ended_among(job_ids)


def _frame(event: dict[str, Any], data: bytes | None = None) -> bytes:
    """One SSE frame, as bytes: Django passes bytes on as they are (a str it encodes with
    the response's charset, parsed from its content type on every chunk). `data`: the
    event's JSON as published (one line), which need not be encoded again."""
    if data is None or b"\n" in data or b"\r" in data:
        data = json.dumps(event, separators=(",", ":")).encode()
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event["seq"], event["kind"].encode(), data)


async def _catch_up(job_id: str, cursor: EventCursor) -> AsyncIterator[dict[str, Any]]:
    """Every stored event after the cursor (and in its gaps), a page at a time."""
    while True:
        page = await _stored(job_id, cursor.read_after)
        for event in cursor.stored(page):
            yield event
        if len(page) < EVENTS_PAGE:
            return


async def _events(job_id: str, after: int) -> AsyncIterator[bytes]:
    """The rules of jobs.follow, asynchronously: an open stream holds no thread, and its
    live events come from the process's one Redis subscriber (core/pubsub.py)."""
    cursor = EventCursor(last=after)
    listener = pubsub.listen(
        settings.COUNTERSIGN_EVENTS_REDIS_URL, channel_name(job_id), limit=BUFFERED_BYTES
    )
    watch = _EndWatch.of_loop()
    poked = watch.add(job_id, listener)
    loop = asyncio.get_running_loop()
    try:
        if listener is not None:  # subscribed before the replay: nothing falls between
            await listener.wait_live(SUBSCRIBE_WAIT_SECONDS)
            listener.stale = False
        replayed_closing = False
        async for event in _catch_up(job_id, cursor):
            replayed_closing = replayed_closing or event["kind"] in CLOSING_EVENTS
            yield _frame(event)
        now = loop.time()
        # The status now if the replay holds a closing event (a job that ended before a
        # client reconnected); else the end watch covers a missed publication of the end.
        next_check = now if replayed_closing else math.inf
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
            closing = poked.is_set()
            poked.clear()
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
                    yield _frame(live, raw)
            if sent:
                quiet_since = now
            elif now - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = now
                yield b": keep-alive\n\n"
            if closing:
                next_check = now  # check the status now
            if now >= next_check:
                if cursor.missing:  # fill the gap from the rows
                    async for event in _catch_up(job_id, cursor):
                        yield _frame(event)
                # A gap still open: its rows may not be committed yet; look again later.
                next_check = now + STATUS_CHECK_SECONDS if cursor.missing else math.inf
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
        watch.remove(job_id, poked)
        if listener is not None:
            listener.close()


class _Poke:
    """Set by the end watch when a stream's job has ended (the stream then reads its
    status itself); wakes the stream's wait for live events."""

    __slots__ = ("_set", "_listener")

    def __init__(self, listener: pubsub.Listener | None) -> None:
        self._set = False
        self._listener = listener

    def set(self) -> None:
        self._set = True
        if self._listener is not None:
            self._listener.wake()

    def is_set(self) -> bool:
        return self._set

    def clear(self) -> None:
        self._set = False


class _EndWatch:
    """For the streams of one event loop: every STATUS_CHECK_SECONDS, one read of which of
    their jobs have ended (or are gone), rather than a status read per stream. It finds
    the end of a job whose closing event was not published live (its publisher backing
    off); the streams of those jobs are poked and read the status themselves."""

    _watches: dict[asyncio.AbstractEventLoop, "_EndWatch"] = {}

    @classmethod
    def of_loop(cls) -> "_EndWatch":
        loop = asyncio.get_running_loop()
        watch = cls._watches.get(loop)
        if watch is None:
            for old in [old for old in cls._watches if old.is_closed()]:
                del cls._watches[old]  # a finished loop's (tests run several)
            watch = cls._watches[loop] = cls()
        return watch

    def __init__(self) -> None:
        self._pokes: dict[str, set[_Poke]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, job_id: str, listener: pubsub.Listener | None) -> _Poke:
        poke = _Poke(listener)
        self._pokes.setdefault(job_id, set()).add(poke)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return poke

    def remove(self, job_id: str, poke: _Poke) -> None:
        pokes = self._pokes.get(job_id)
        if pokes is not None:
            pokes.discard(poke)
            if not pokes:
                del self._pokes[job_id]

    async def _run(self) -> None:
        try:
            while self._pokes:
                await asyncio.sleep(STATUS_CHECK_SECONDS)
                try:
                    finished = await _ended_among(list(self._pokes))
                except Exception:  # the database away: the next round tries again
                    logger.warning("could not read the status of streamed jobs", exc_info=True)
                    continue
                for job_id in finished:
                    for poke in self._pokes.get(job_id, ()):
                        poke.set()
        finally:
            self._task = None


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
