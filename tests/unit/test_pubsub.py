"""The shared Redis subscriber (core/pubsub.py), in-process against a real, private
redis-server: one connection per loop, channels subscribed while wanted, slow listeners
marked stale instead of holding up the others, and reconnection after a restart."""

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core import pubsub
from tests.redis_server import RedisServer

LIMIT = 1024 * 1024


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def until(predicate: Callable[[], object], *, timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def collect(listener: pubsub.Listener, into: list[bytes], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(into) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(into)} messages of {count} after 10 s")
        await listener.wait(1)
        listener.stale = False  # (wait returns at once while it is set)
        into += listener.take()


def listen(server: RedisServer, channel: str, limit: int = LIMIT) -> pubsub.Listener:
    listener = pubsub.listen(server.url, channel, limit=limit)
    assert listener is not None
    return listener


def channels(count: int) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    return [f"test:{prefix}:{i}" for i in range(count)]


def test_listeners_share_one_connection_and_a_channel_is_left_with_its_last_listener(
    redis_server: RedisServer,
):
    async def scenario() -> None:
        names = channels(20)
        listeners = [listen(redis_server, name) for name in names]
        twin = listen(redis_server, names[0])
        for listener in [*listeners, twin]:
            assert await listener.wait_live(10)

        # one connection holds every channel, each once
        subscribers = await asyncio.to_thread(redis_server.subscribers)
        assert [int(c["sub"]) for c in subscribers] == [20]

        publisher = aioredis.Redis.from_url(redis_server.url)
        for name in names:
            await publisher.publish(name, name.encode())
        for listener, name in zip(listeners, names, strict=True):
            got: list[bytes] = []
            await collect(listener, got, 1)
            assert got == [name.encode()]
        got = []
        await collect(twin, got, 1)
        assert got == [names[0].encode()]

        # when

        twin.close()
        listeners[1].close()
        await until(lambda: redis_server.numsub(names[1]) == 0, what="the unsubscription")

        # then
        assert redis_server.numsub(names[0]) == 1  # listeners[0] still follows it
        await publisher.publish(names[0], b"again")
        got = []
        await collect(listeners[0], got, 1)
        assert got == [b"again"]

        for listener in listeners:
            listener.close()
        await until(lambda: all(redis_server.numsub(name) == 0 for name in names))
        subscriber = pubsub.subscriber_of(redis_server.url)
        assert subscriber is not None and subscriber.channels() == 0
        # Nothing left running but the subscriber itself (and this test).
        await until(lambda: len(asyncio.all_tasks()) == 2, what="no task but the subscriber")
        await publisher.aclose()

    asyncio.run(scenario())


def test_a_channel_left_and_wanted_again_before_redis_answers_ends_subscribed(
    redis_server: RedisServer,
):
    async def scenario() -> None:
        name = channels(1)[0]
        first = listen(redis_server, name)
        assert await first.wait_live(10)
        first.close()
        await asyncio.sleep(0)  # the UNSUBSCRIBE goes out; its reply is not read yet
        second = listen(redis_server, name)
        assert not second.live
        assert await second.wait_live(10)

        await until(lambda: redis_server.numsub(name) == 1)
        publisher = aioredis.Redis.from_url(redis_server.url)
        await publisher.publish(name, b"hello")
        got: list[bytes] = []
        await collect(second, got, 1)
        assert got == [b"hello"]
        await publisher.aclose()

    asyncio.run(scenario())


def test_a_listener_that_falls_behind_is_marked_stale_and_holds_up_no_other(
    redis_server: RedisServer,
):
    async def scenario() -> None:
        name = channels(1)[0]
        slow = listen(redis_server, name, 1000)
        fast = listen(redis_server, name, 1000)
        assert await slow.wait_live(10) and await fast.wait_live(10)
        slow.stale = fast.stale = False
        publisher = aioredis.Redis.from_url(redis_server.url)

        got: list[bytes] = []
        reading = asyncio.create_task(collect(fast, got, 50))
        for i in range(50):
            await publisher.publish(name, b"%03d" % i + b"x" * 97)  # 100 bytes each
        await asyncio.wait_for(reading, 10)

        assert [message[:3] for message in got] == [b"%03d" % i for i in range(50)]
        assert not fast.stale
        assert slow.stale  # it never read: its messages were dropped, not piled up
        held = slow.take()
        assert sum(len(m) for m in held) <= 1000 and len(held) < 50
        await publisher.aclose()

    asyncio.run(scenario())


def test_after_redis_restarts_the_listeners_are_live_again_and_told_to_re_read(
    redis_server: RedisServer,
):
    async def scenario() -> None:
        names = channels(3)
        listeners = [listen(redis_server, name) for name in names]
        for listener in listeners:
            assert await listener.wait_live(10)
            listener.stale = False

        # when
        await asyncio.to_thread(redis_server.stop)

        # then
        await until(lambda: not any(listener.live for listener in listeners))
        assert all(listener.stale for listener in listeners)
        started = time.monotonic()
        for listener in listeners:
            listener.stale = False
            assert not await listener.wait_live(5)
        assert time.monotonic() - started < 1  # at once: Redis is known to be down

        # when
        await asyncio.to_thread(redis_server.start)

        # then
        await until(lambda: all(listener.live for listener in listeners), timeout=15)
        for listener in listeners:
            assert listener.stale  # what was published meanwhile reached nobody
            assert listener.recovering()
        assert [int(c["sub"]) for c in redis_server.subscribers()] == [3]
        publisher = aioredis.Redis.from_url(redis_server.url)
        for name in names:
            await publisher.publish(name, b"back")
        for listener in listeners:
            got: list[bytes] = []
            await collect(listener, got, 1)
            assert got == [b"back"]
        await publisher.aclose()

    asyncio.run(scenario())


def test_no_url_means_no_listener():
    async def scenario() -> None:
        assert pubsub.listen("", "test:anything", limit=LIMIT) is None

    asyncio.run(scenario())


def test_replies_are_read_whole_however_the_bytes_arrive():
    replies = (
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nj:42\r\n:1\r\n"
        b'*3\r\n$7\r\nmessage\r\n$4\r\nj:42\r\n$11\r\n{"a":"\r\n"}x\r\n'
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    )
    expected = [
        [b"subscribe", b"j:42", 1],
        [b"message", b"j:42", b'{"a":"\r\n"}x'],
        [b"pong", b""],
    ]
    for cut in range(len(replies) + 1):  # every split of the bytes into two reads
        got, buffer = [], b""
        for chunk in (replies[:cut], replies[cut:]):
            buffer += chunk
            position = 0
            while (parsed := pubsub._parse(buffer, position)) is not None:
                reply, position = parsed
                got.append(reply)
            buffer = buffer[position:]
        assert got == expected and buffer == b"", cut


def test_an_error_reply_is_raised():
    with pytest.raises(ResponseError, match="NOPERM"):
        pubsub._parse(b"-NOPERM no rights\r\n", 0)
