"""The SSE streams of one web process share its one Redis subscriber (core/pubsub.py).

Through a real uvicorn process whose live events come from a private redis-server, so
the tests can read its client list, restart it, and give it a small output-buffer limit
(Redis's default for pub/sub clients, `32mb 8mb 60`, scaled down by 8): a connection
that does not read its messages is closed by Redis once that much waits for it.
"""

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import Organization, Role
from core import redis as core_redis
from jobs.models import Job, JobEvent, JobStatus
from jobs.processes import poll_until
from jobs.runtime.events import append_event, channel_name
from tests.api.test_job_stream import frames, member_token
from tests.conftest import RUNTIME_ENV, database_url
from tests.redis_server import RedisServer, free_port
from tests.utils import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def events_redis() -> Iterator[RedisServer]:
    server = RedisServer("--client-output-buffer-limit", "pubsub 4mb 1mb 60").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def events_redis_up(events_redis: RedisServer) -> Iterator[None]:
    yield
    if events_redis.process is None:  # a test that stopped it failed before starting it
        events_redis.start()


@pytest.fixture(scope="module")
def web(
    django_db_setup: None, events_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """One uvicorn process (one event loop) taking its live events from `events_redis`."""
    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    env = {
        **os.environ,
        **RUNTIME_ENV,
        "DATABASE_URL": database_url(),
        "COUNTERSIGN_EVENTS_REDIS_URL": events_redis.url,
    }
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll_until(
            lambda: _healthy(port),
            timeout=30,
            what=f"uvicorn to answer ({Path(log).read_text()[-500:]})",
        )
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a stream a failed test left open
            server.kill()
            server.wait()


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture
def live_events(settings: Any, events_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process publishes its events to `events_redis`, with no back-off left over."""
    settings.COUNTERSIGN_EVENTS_REDIS_URL = events_redis.url
    monkeypatch.setattr(core_redis, "_down_until", {})


class Stream:
    """An SSE client whose frames a thread reads (once `read()` is called), noting when
    each arrived and whether the server ended the stream."""

    def __init__(self, port: int, job: Job, token: str, *, receive_buffer: int = 0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        if receive_buffer:  # a small window: the server's writes block sooner
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(60)
            sock.connect(("127.0.0.1", port))
            self.conn.sock = sock
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self.conn.request("GET", f"/api/v1/jobs/{job.pk}/stream/", headers=headers)
        assert self.conn.sock is not None
        # To hang up while the thread reads (http.client closes its own socket object).
        self.hangup = self.conn.sock.dup()
        self.frames: list[tuple[int, str]] = []
        self.arrived: list[float] = []
        self.ended = False
        self.error: BaseException | None = None

    def read(self) -> "Stream":
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            response = self.conn.getresponse()
            assert response.status == 200, response.status
            for frame in frames(response):
                self.frames.append(frame)
                self.arrived.append(time.monotonic())
            self.ended = True
        except Exception as exc:  # noqa: BLE001 - the test reads it
            self.error = exc

    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.frames]

    def close(self) -> None:
        """Hang up, as a client that goes away does."""
        if self.hangup.fileno() != -1:
            self.hangup.shutdown(socket.SHUT_RDWR)
            self.hangup.close()


def waiting_job(organization: Organization) -> Job:
    return Job.objects.create(
        job_type="simple-task",
        organization=organization,
        status=JobStatus.WAITING,
        wait_reason="checkpoint",
    )


def finish(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    append_event(str(job.pk), "job.succeeded")


def numsub(server: RedisServer, job: Job) -> int:
    return server.numsub(channel_name(str(job.pk)))


def subscribed_channels(server: RedisServer) -> list[int]:
    """For each connection holding subscriptions, how many channels it holds."""
    return [int(client["sub"]) for client in server.subscribers()]


@pytest.fixture
def token(acme: Organization, live_events: None) -> str:
    return member_token("vic", acme, Role.VIEWER)


def test_the_streams_of_a_process_share_one_connection_and_leave_each_channel_when_last(
    web: int, events_redis: RedisServer, acme: Organization, token: str
):
    jobs = [waiting_job(acme) for _ in range(30)]
    streams = [Stream(web, job, token).read() for job in jobs]
    twin = Stream(web, jobs[0], token).read()  # a second stream of the first job
    wait_for(
        lambda: all(numsub(events_redis, job) >= 1 for job in jobs),
        message="every stream subscribed",
    )

    assert subscribed_channels(events_redis) == [30]  # one connection, each channel once
    assert numsub(events_redis, jobs[0]) == 1
    for job in jobs:
        append_event(str(job.pk), "progress", {"n": 1})
    wait_for(lambda: all(s.seqs() == [1] for s in [*streams, twin]), message="the events")

    # when one of the first job's two streams and the second job's only one disconnect
    twin.close()
    streams[1].close()

    # then the second job's channel is left, the first job's kept
    wait_for(lambda: numsub(events_redis, jobs[1]) == 0, message="the second job's channel left")
    assert numsub(events_redis, jobs[0]) == 1
    append_event(str(jobs[0].pk), "progress", {"n": 2})
    wait_for(lambda: streams[0].seqs() == [1, 2], message="the first job's next event")

    for stream in streams:
        stream.close()
    wait_for(lambda: subscribed_channels(events_redis) == [], message="every channel left")


def test_a_restart_of_redis_loses_no_event_of_the_open_streams(
    web: int, events_redis: RedisServer, acme: Organization, token: str
):
    jobs = [waiting_job(acme) for _ in range(3)]
    streams = [Stream(web, job, token).read() for job in [*jobs, jobs[0]]]
    wait_for(lambda: all(numsub(events_redis, job) >= 1 for job in jobs), message="subscribed")
    for job in jobs:
        append_event(str(job.pk), "progress", {"n": 1})
    wait_for(lambda: all(s.seqs() == [1] for s in streams), message="the first events")

    # when Redis stops (events 2 and 3 are only in the database) and starts again
    events_redis.stop()
    for job in jobs:
        append_event(str(job.pk), "progress", {"n": 2})
        append_event(str(job.pk), "progress", {"n": 3})
    wait_for(lambda: all(s.seqs() == [1, 2, 3] for s in streams), message="events from the rows")
    events_redis.start()
    wait_for(
        lambda: all(numsub(events_redis, job) >= 1 for job in jobs),
        timeout=30,
        message="the channels subscribed again",
    )
    assert subscribed_channels(events_redis) == [3]  # on one connection again
    core_redis._down_until.clear()  # publish again now, not after this process's back-off
    for job in jobs:
        append_event(str(job.pk), "progress", {"n": 4})
        finish(job)

    # then every stream has every event once, in order, and ends with its job
    wait_for(lambda: all(s.ended or s.error for s in streams), message="the streams to end")
    for stream in streams:
        assert stream.error is None
        assert stream.seqs() == [1, 2, 3, 4, 5]
        assert stream.frames[-1][1] == "job.succeeded"


def test_a_client_that_does_not_read_holds_up_no_other_stream_and_misses_nothing(
    web: int, events_redis: RedisServer, acme: Organization, token: str
):
    job, other_job = waiting_job(acme), waiting_job(acme)
    slow = Stream(web, job, token, receive_buffer=4096)  # asks, then reads nothing
    wait_for(lambda: numsub(events_redis, job) == 1, message="the slow stream subscribed")
    fast = Stream(web, job, token).read()
    other = Stream(web, other_job, token).read()
    append_event(str(job.pk), "progress", {"n": 0})
    wait_for(lambda: fast.seqs() == [1], message="the fast stream following")

    # when 16 MB of events go to the job (more than the socket buffers and the slow
    # stream's buffer hold, and more than Redis keeps for a subscriber that does not read)
    pad = "x" * 100_000
    for i in range(160):
        append_event(str(job.pk), "progress", {"i": i, "pad": pad})
    for i in range(300):
        append_event(str(job.pk), "progress", {"i": 160 + i})
    append_event(str(other_job.pk), "progress", {"n": 1})

    # then the streams that read get everything while the slow one still reads nothing
    wait_for(lambda: len(fast.frames) == 461, timeout=60, message="the fast stream's events")
    wait_for(lambda: other.seqs() == [1], message="the other job's event")
    assert fast.seqs() == list(range(1, 462))

    # and the slow one, read at last, has every event once, in order, to the job's end
    slow.read()
    finish(job)
    wait_for(lambda: slow.ended or slow.error, timeout=60, message="the slow stream to end")
    assert slow.error is None
    assert slow.seqs() == list(range(1, 463))
    assert slow.frames[-1][1] == "job.succeeded"
    other.close()


def test_a_job_whose_end_was_never_published_still_ends_its_streams(
    web: int, events_redis: RedisServer, acme: Organization, token: str
):
    job = waiting_job(acme)
    stream = Stream(web, job, token).read()
    wait_for(lambda: numsub(events_redis, job) >= 1, message="subscribed")

    # when the job ends while its publisher skips Redis (backing off)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    JobEvent.objects.create(job=job, seq=1, kind="job.succeeded", data={})

    # then the periodic check of the process's followed jobs finds it
    wait_for(lambda: stream.ended or stream.error, timeout=30, message="the stream to end")
    assert stream.error is None
    assert stream.frames == [(1, "job.succeeded")]
