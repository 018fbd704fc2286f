"""One Redis pub/sub connection per event loop, shared by every local listener.

An async web process follows many channels at once (an SSE stream per job). Instead of a
connection each, `listen()` gives each follower a `Listener` of the loop's one `Subscriber`:
it subscribes a channel while at least one listener wants it, unsubscribes it when the last
one leaves, and hands every message of the channel to its listeners.

Handing a message on never waits for a listener. Each holds at most `limit` bytes of
messages (a larger one only when it holds nothing else); one that falls further behind (a
slow client) drops them and is marked `stale`, so its owner reads what it missed from the
record (for job events, the database).

A listener is `live` once Redis has confirmed its channel's subscription: whatever is
published after that reaches it. If the connection drops, every listener stops being live
and is marked stale; the subscriber connects again (backing off, 0.1 s doubling to 5 s) and
subscribes again, and each listener, live again, is marked stale once more: what was
published in between reached nobody. `recovering()` stays true for core.redis.RETRY_SECONDS
after such a reconnection, the time publishers that failed meanwhile skip publishing.

Sync code (the chat command, `enqueue --wait`) keeps a plain subscription of its own
(jobs/follow.py): one follower per process, nothing to share.
"""

import asyncio
import logging
import math
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError, InvalidResponse, RedisError, ResponseError

from core.redis import RETRY_SECONDS

logger = logging.getLogger(__name__)

RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0
READ_BYTES = 256 * 1024
# A connection quiet this long is asked for a PING; no answer by the next interval and it
# is taken for dead (a peer that vanished without closing the socket).
PING_SECONDS = 30.0


class Listener:
    """One local follower of a channel. Its owner waits (`wait`), takes the messages
    (`take`), and re-reads its record whenever `stale` is set, clearing it first."""

    def __init__(self, subscriber: "Subscriber", channel: bytes, limit: int) -> None:
        self.channel = channel
        self.live = False
        self.stale = False
        self._subscriber = subscriber
        self._limit = limit
        self._messages: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def take(self) -> list[bytes]:
        """The messages received since the last take, oldest first."""
        messages = list(self._messages)
        self._messages.clear()
        self._size = 0
        return messages

    async def wait(self, timeout: float) -> None:
        """Until there is something to take or the listener is stale, or `timeout` passes."""
        if not (self._messages or self.stale):
            await self._sleep(timeout)

    async def wait_live(self, timeout: float) -> bool:
        """Wait for the subscription to be confirmed; False at once if Redis is known to be
        down, or when `timeout` passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.live and not self._subscriber.down and loop.time() < deadline:
            await self._sleep(deadline - loop.time())
        return self.live

    async def _sleep(self, timeout: float) -> None:
        """Until the subscriber wakes this listener or `timeout` passes. (A bare future and
        timer: an Event with asyncio.timeout takes twice the time per wake-up.)"""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(max(timeout, 0.0), _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def recovering(self) -> bool:
        """Whether Redis came back less than RETRY_SECONDS ago (publishers may still be
        backing off, so live messages may be missing without any sign)."""
        return self._subscriber.recovering()

    def wake(self) -> None:
        """End the owner's current `wait` now (for a reason of its own)."""
        self._wake()

    def close(self) -> None:
        """Stop listening; the channel is unsubscribed if this was its last listener.
        Synchronous, so it also works in a `finally` of a cancelled task."""
        if not self._closed:
            self._closed = True
            self._subscriber._leave(self)

    def _deliver(self, data: bytes) -> None:
        if self._messages and self._size + len(data) > self._limit:
            self._messages.clear()  # the owner re-reads the record instead
            self._size = 0
            self.stale = True
        else:
            self._messages.append(data)
            self._size += len(data)
        self._wake()

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            # Live again: what was published before reached nobody. Dropped: nothing
            # will arrive until it is live again.
            self.stale = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)


@dataclass(eq=False)
class _Channel:
    listeners: set[Listener] = field(default_factory=set)
    # SUBSCRIBE (True) and UNSUBSCRIBE (False) commands sent whose reply is not read yet,
    # oldest first; Redis answers a connection's commands in order.
    sent: deque[bool] = field(default_factory=deque)
    subscribed: bool = False  # as of the last reply read

    @property
    def intended(self) -> bool:
        return self.sent[-1] if self.sent else self.subscribed


class Subscriber:
    """The connection of one event loop to one Redis, and the channels its listeners want."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.down = False  # the last connection attempt failed, or the connection dropped
        self._recovered_at = -math.inf
        self._channels: dict[bytes, _Channel] = {}
        self._dirty: set[bytes] = set()  # channels whose subscription may need a command
        self._connection: Any = None
        self._flushing: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"redis subscriber {url}")

    def listen(self, channel: str, *, limit: int) -> Listener:
        name = channel.encode()
        listener = Listener(self, name, limit)
        state = self._channels.get(name)
        if state is None:
            state = self._channels[name] = _Channel()
        state.listeners.add(listener)
        if state.subscribed and not state.sent:
            listener.live = True  # already subscribed, nothing pending: live from now
        else:
            self._touch(name)
        self._wanted.set()
        return listener

    def recovering(self) -> bool:
        return self._loop.time() < self._recovered_at + RETRY_SECONDS

    def channels(self) -> int:
        """How many channels the connection holds or is asked to hold (for tests)."""
        return sum(1 for state in self._channels.values() if state.intended)

    def _leave(self, listener: Listener) -> None:
        state = self._channels.get(listener.channel)
        if state is None:
            return
        state.listeners.discard(listener)
        if not state.listeners:
            if state.intended:
                self._touch(listener.channel)
            elif not state.sent:
                del self._channels[listener.channel]

    def _touch(self, name: bytes) -> None:
        self._dirty.add(name)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """One flush at a time, after the current callbacks: the channels of streams
        opened together go in one command."""
        if self._dirty and self._connection is not None and self._flushing is None:
            self._flushing = self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        """Send one SUBSCRIBE and one UNSUBSCRIBE for every channel whose wanted state
        differs from what the connection was last told; each reply settles one."""
        try:
            while self._dirty and self._connection is not None:
                connection = self._connection
                subscribe: list[bytes] = []
                unsubscribe: list[bytes] = []
                for name in self._dirty:
                    state = self._channels.get(name)
                    if state is None:
                        continue
                    wanted = bool(state.listeners)
                    if wanted != state.intended:
                        state.sent.append(wanted)
                        (subscribe if wanted else unsubscribe).append(name)
                self._dirty.clear()
                if subscribe:
                    await connection.send_command("SUBSCRIBE", *subscribe, check_health=False)
                if unsubscribe:
                    await connection.send_command("UNSUBSCRIBE", *unsubscribe, check_health=False)
        except (RedisError, OSError):
            pass  # the connection is failing; its reader drops it and subscribes again
        finally:
            self._flushing = None
            self._schedule_flush()  # what a new connection asked for meanwhile

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        finally:  # the loop is ending (cancelled)
            if self._connection is not None:
                await self._connection.disconnect(nowait=True)

    async def _keep_connected(self) -> None:
        delay = RECONNECT_FIRST_SECONDS
        while True:
            if not self._channels:
                self._wanted.clear()
                await self._wanted.wait()
            connection = await self._connect()
            if connection is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            connected_at = self._loop.time()
            self._connection = connection
            for name in list(self._channels):
                self._touch(name)
            try:
                await self._read(connection)
            except (RedisError, OSError) as exc:
                logger.warning("live events: lost Redis (%s); streams read the database", exc)
            except Exception:  # a bug here must not end live events for the process
                logger.exception("live events: the subscriber failed; connecting again")
            self._connection = None
            self.down = True
            self._dropped()
            await connection.disconnect(nowait=True)
            # At once after a connection that held; backing off from one that keeps failing.
            lasted = self._loop.time() - connected_at >= RECONNECT_MAX_SECONDS
            delay = RECONNECT_FIRST_SECONDS if lasted else min(delay * 2, RECONNECT_MAX_SECONDS)
            await asyncio.sleep(0 if lasted else delay)

    async def _connect(self) -> Any:
        """A new connection, or None (and the listeners told Redis is down) if it fails."""
        connection = None
        try:
            connection = _connection(self.url)
            await connection.connect()
        except Exception as exc:  # unreachable, refused, a bad URL: all mean no live events
            if connection is not None:
                await connection.disconnect(nowait=True)
            if not self.down:
                self.down = True
                logger.warning(
                    "live events: cannot reach Redis (%s); streams read the database",
                    exc,
                    exc_info=not isinstance(exc, RedisError | OSError),
                )
                self._wake_all()
            return None
        if self.down:
            self.down = False
            self._recovered_at = self._loop.time()
            logger.info("live events: Redis is back; subscribing again")
        return connection

    async def _read(self, connection: Any) -> None:
        """Read the connection's replies a chunk at a time and act on each. (redis-py's
        own reader takes about 0.1 ms per message; a burst to 1 000 streams is 1 000.)"""
        reader: asyncio.StreamReader = connection._reader
        buffer = b""
        pinged = False
        while True:
            try:
                async with asyncio.timeout(PING_SECONDS):
                    chunk = await reader.read(READ_BYTES)
            except TimeoutError:
                if pinged:
                    raise ConnectionError("Redis did not answer a PING") from None
                await connection.send_command("PING", check_health=False)
                pinged = True
                continue
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            pinged = False
            buffer += chunk
            position = 0
            while True:
                parsed = _parse(buffer, position)
                if parsed is None:
                    break
                reply, position = parsed
                self._on_reply(reply)
            buffer = buffer[position:]

    def _on_reply(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # a PING's answer
        kind = reply[0]
        if kind == b"message":
            state = self._channels.get(reply[1])
            if state is not None:
                for listener in state.listeners:
                    listener._deliver(reply[2])
        elif kind in (b"subscribe", b"unsubscribe"):
            self._settle(reply[1], kind == b"subscribe")

    def _settle(self, name: bytes, subscribed: bool) -> None:
        state = self._channels.get(name)
        if state is None:
            return
        if state.sent:
            state.sent.popleft()
        state.subscribed = subscribed
        if state.sent:
            return  # more to come for this channel: its state is the last reply's
        if subscribed:
            for listener in state.listeners:
                listener._set_live(True)
        elif state.listeners:
            self._touch(name)  # a listener came while it was being unsubscribed
        else:
            del self._channels[name]

    def _dropped(self) -> None:
        for name, state in list(self._channels.items()):
            state.sent.clear()
            state.subscribed = False
            if not state.listeners:
                del self._channels[name]
            for listener in state.listeners:
                listener._set_live(False)
        self._dirty.clear()

    def _wake_all(self) -> None:
        for state in self._channels.values():
            for listener in state.listeners:
                listener._wake()


def _wake(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


def _parse(buffer: bytes, position: int) -> tuple[Any, int] | None:
    """One RESP2 reply at `position`: (the reply, the position after it), or None if the
    buffer does not hold all of it yet. Bulk strings stay bytes."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        return None
    kind, line, position = buffer[position], buffer[position + 1 : end], end + 2
    if kind == 0x24:  # $ a bulk string
        length = int(line)
        if length < 0:
            return None, position
        if len(buffer) < position + length + 2:
            return None
        return buffer[position : position + length], position + length + 2
    if kind == 0x2A:  # * an array
        items = []
        for _ in range(int(line)):
            parsed = _parse(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        return items, position
    if kind == 0x3A:  # : an integer
        return int(line), position
    if kind == 0x2B:  # + a simple string
        return line, position
    if kind == 0x2D:  # - an error
        raise ResponseError(line.decode(errors="replace"))
    raise InvalidResponse(f"unexpected reply from Redis: {bytes([kind]) + line!r}")


def _connection(url: str) -> Any:
    from redis.asyncio.connection import ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    pool = ConnectionPool.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=None,  # reads wait for messages; PING_SECONDS finds a dead peer
        retry=Retry(NoBackoff(), 0),  # the subscriber's own loop backs off and retries
        client_name=f"countersign-events-{os.getpid()}",
        # RESP2: messages are plain replies read in order (under RESP3, redis-py's
        # default, they would be pushes taken by the parser's own handler).
        protocol=2,
    )
    return pool.make_connection()


_subscribers: dict[tuple[asyncio.AbstractEventLoop, str], Subscriber] = {}


def listen(url: str, channel: str, *, limit: int) -> Listener | None:
    """A listener of `channel` on the running loop's subscriber to `url` (started on first
    use), or None when `url` is empty (live events are off)."""
    if not url:
        return None
    loop = asyncio.get_running_loop()
    subscriber = _subscribers.get((loop, url))
    if subscriber is None:
        for key in [key for key in _subscribers if key[0].is_closed()]:
            del _subscribers[key]  # a finished loop's (tests run several)
        subscriber = _subscribers[(loop, url)] = Subscriber(url)
    return subscriber.listen(channel, limit=limit)


def subscriber_of(url: str) -> Subscriber | None:
    """The running loop's subscriber to `url`, if it has one (for tests)."""
    return _subscribers.get((asyncio.get_running_loop(), url))
