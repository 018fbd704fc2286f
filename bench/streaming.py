"""Streaming benchmark: how fast streamed model text reaches an SSE client, and how
many SSE streams one web process holds.

1. Chunk latency. A real worker runs agent-task jobs whose OpenAI provider (the real
   SDK) streams from a local server speaking the OpenAI wire protocol, one chunk
   every --chunk-delay seconds. A client follows each job at /api/v1/jobs/ID/stream/
   on uvicorn. For every `llm.delta` event: the time from the first of its chunks
   reaching the worker (`at`) to the event reaching the client.
2. Concurrent streams. N clients open streams on a fresh uvicorn process (jobs that stay
   waiting). Its memory is read with none open and with the N idle (per idle stream:
   the difference over N), its CPU while they idle for 10 s, and how many Redis
   connections hold subscriptions. Then one event per job is published at once (N
   PUBLISH commands packed beforehand, sent in one write) and the time until every
   stream has it is measured, with the web process's CPU time; five bursts, the middle
   one reported. The clients run on uvloop and only look for the burst's marker in what
   arrives, so that little of the time is their own.

Run: `make bench-streaming`, or `python bench/streaming.py --help`.
"""

import argparse
import asyncio
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import free_port, start_server  # noqa: E402

BENCH_DATABASE = "countersign_bench_streaming"
QUEUE = f"countersign-bench-stream-{uuid.uuid4().hex[:8]}"
T = TypeVar("T")
IDLE_SECONDS = 10.0  # at least one round of the streams' periodic status checks


def setup_django() -> None:
    from bench.database import fresh_database

    url = fresh_database(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"), BENCH_DATABASE
    )
    os.environ.update(
        DATABASE_URL=url,
        COUNTERSIGN_QUEUE=QUEUE,
        COUNTERSIGN_METRICS_PREFIX=f"countersign-bench:{QUEUE}:metrics",
        DEBUG="1",
        LOG_LEVEL="WARNING",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def follow(port: int, token: str, job_id: str) -> list[tuple[float, float]]:
    """Read the job's stream to its end. For each llm.delta event, in ms: from its first
    chunk reaching the worker, and from the event being emitted (after coalescing)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "GET", f"/api/v1/jobs/{job_id}/stream/", headers={"Authorization": f"Bearer {token}"}
    )
    response = conn.getresponse()
    assert response.status == 200, response.status
    latencies = []
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event["kind"] == "llm.delta":
                now = time.time()
                emitted = datetime.fromisoformat(event["created_at"]).timestamp()
                latencies.append(((now - event["data"]["at"]) * 1000, (now - emitted) * 1000))
    conn.close()
    return latencies


def chunk_latency(
    port: int, token: str, agent: object, llm: object, runs: int, chunks: int, delay: float
) -> tuple[list[tuple[float, float]], int]:
    from agents.services import agent_execute
    from tests.llm_server import Reply

    latencies: list[tuple[float, float]] = []
    for _ in range(runs):
        # The model "thinks" 0.3 s first, so the client is listening when text starts.
        llm.script(  # type: ignore[attr-defined]
            Reply(
                chunks=[f"w{i} " for i in range(chunks)],
                chunk_delay=delay,
                delay=0.3,
            )
        )
        job = agent_execute(agent=agent, user=None, task="Stream, please")  # type: ignore[arg-type]
        latencies += follow(port, token, str(job.pk))
    return latencies, runs * chunks


class StreamClient(asyncio.Protocol):
    """One SSE stream, as cheap to read as a client can be (a callback per chunk, not a
    parse per line): 1 000 of them share one process, whose own work would otherwise
    be timed with the server's. Notes when the chunk holding `marker` arrives."""

    def __init__(self) -> None:
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.marker = b""
        self.arrived: asyncio.Future[float] | None = None
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            if b" 200 " in data.split(b"\r\n", 1)[0]:
                self.opened.set_result(None)
            else:
                self.opened.set_exception(RuntimeError(data[:100].decode(errors="replace")))
        if self.arrived is not None and not self.arrived.done():
            if self.marker in self.tail + data:
                self.arrived.set_result(time.perf_counter())
            self.tail = data[-len(self.marker) :]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.arrived):
            if future is not None and not future.done():
                future.set_exception(RuntimeError("stream closed"))

    def expect(self, marker: bytes) -> "asyncio.Future[float]":
        self.marker, self.tail = marker, b""
        self.arrived = asyncio.get_running_loop().create_future()
        return self.arrived


async def open_stream(port: int, token: str, job_id: str) -> StreamClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(StreamClient, "127.0.0.1", port)
    assert client.transport is not None
    client.transport.write(
        f"GET /api/v1/jobs/{job_id}/stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await client.opened
    return client


async def subscriber_connections(client: object) -> int:
    """Connections of this Redis that hold a channel subscription (CLIENT LIST `sub=`)."""
    listing = await client.client_list()  # type: ignore[attr-defined]
    return sum(1 for c in listing if int(c.get("sub", 0)) > 0)


async def hold_streams(
    port: int, token: str, job_ids: list[str], web_pid: int, bursts: int
) -> dict[str, Any]:
    """Open a stream per job, wait until every one is subscribed and the process has
    settled, read its memory, then publish one event per job at once (one
    write) and time its delivery to every stream; `bursts` times, the middle one
    reported."""
    import redis.asyncio as aioredis
    from django.conf import settings

    from jobs.runtime.events import channel_name

    client = aioredis.Redis.from_url(settings.COUNTERSIGN_EVENTS_REDIS_URL)
    connections_before = await subscriber_connections(client)
    rss_none = rss_mb(web_pid)
    opened_at = time.perf_counter()
    opened = await asyncio.gather(
        *(open_stream(port, token, j) for j in job_ids), return_exceptions=True
    )
    streams = [s for s in opened if not isinstance(s, BaseException)]
    failures = len(opened) - len(streams)
    channels = [channel_name(job_id) for job_id in job_ids]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every stream subscribed, so none can miss it
        counts = await client.pubsub_numsub(*channels)
        if all(count >= 1 for _, count in counts):
            break
        await asyncio.sleep(0.1)
    open_s = time.perf_counter() - opened_at
    await asyncio.sleep(2)  # the streams' first reads done; the process idle
    rss_idle = rss_mb(web_pid)
    cpu_before, idle_from = cpu_ms(web_pid), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    idle_cpu = (cpu_ms(web_pid) - cpu_before) / (time.perf_counter() - idle_from) / 10
    connections = await subscriber_connections(client) - connections_before
    publisher = client.connection_pool.make_connection()
    await publisher.connect()
    load = os.getloadavg()[0]
    rounds = []
    for burst in range(bursts):
        marker = f"bench-{uuid.uuid4().hex[:6]}".encode()
        waiting = [stream.expect(marker) for stream in streams]
        # The jobs have no events: each stream expects number 1 next, then 2, ...
        message = json.dumps(
            {
                "seq": burst + 1,
                "kind": "bench.ping",
                "data": {"m": marker.decode()},
                "created_at": "",
            }
        )
        # Packed beforehand and sent in one write: the clock times Redis and the server,
        # not this process building 1 000 commands.
        packed = publisher.pack_commands(
            [("PUBLISH", channel_name(job_id), message) for job_id in job_ids]
        )
        cpu_before = cpu_ms(web_pid)
        started = time.perf_counter()
        await publisher.send_packed_command(packed, check_health=False)
        answered = asyncio.create_task(read_replies(publisher, len(job_ids)))
        finished, late = await asyncio.wait(waiting, timeout=60)
        published = await answered - started
        cpu = cpu_ms(web_pid) - cpu_before
        for task in late:
            task.cancel()
        delivered = [t.result() - started for t in finished if t.exception() is None]
        rounds.append((max(delivered, default=0) * 1000, delivered, published * 1000, cpu))
        await asyncio.sleep(1)
    # The middle burst by the time to reach every stream.
    all_ms, delivered, publish_ms, cpu = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
    rss_after = rss_mb(web_pid)
    for stream in streams:
        assert stream.transport is not None
        stream.transport.close()
    await publisher.disconnect()
    await client.aclose()
    p50, p99 = percentiles([d * 1000 for d in delivered]) if len(delivered) > 1 else (0, 0)
    return {
        "opened": len(streams),
        "failed": failures,
        "open_s": open_s,
        "connections": connections,
        "delivered": len(delivered),
        "publish_ms": publish_ms,
        "cpu_ms": cpu,
        "load": load,
        "idle_cpu": idle_cpu,
        "bursts": [r[0] for r in rounds],
        "p50": p50,
        "p99": p99,
        "all": all_ms,
        "rss_none": rss_none,
        "rss_idle": rss_idle,
        "rss": rss_after,
        "per_stream_kb": (rss_idle - rss_none) * 1024 / max(len(streams), 1),
    }


async def read_replies(connection: Any, count: int) -> float:
    """Read `count` replies; when the last came."""
    for _ in range(count):
        await connection.read_response()
    return time.perf_counter()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """On uvloop, as the server runs: the clients' own overhead stays small."""
    import uvloop

    return uvloop.run(coroutine)


def warm_up(port: int, token: str, job_id: str) -> None:
    """One stream opened and closed, so the process has imported and set up what a
    stream uses before its memory is read as "no stream"."""

    async def once() -> None:
        stream = await open_stream(port, token, job_id)
        await asyncio.sleep(0.5)
        assert stream.transport is not None
        stream.transport.close()

    run(once())
    time.sleep(0.5)


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (uvicorn's worker)."""
    total = 0
    for candidate in [pid, *child_pids(pid)]:
        status = Path(f"/proc/{candidate}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_ms(pid: int) -> float:
    """CPU time (user and system) of the process and its children so far, in ms."""
    ticks = 0
    for candidate in [pid, *child_pids(pid)]:
        stat = Path(f"/proc/{candidate}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="streamed replies (part 1; 0 skips it)")
    parser.add_argument("--chunks", type=int, default=200, help="chunks per reply")
    parser.add_argument("--chunk-delay", type=float, default=0.01, help="seconds between chunks")
    parser.add_argument("--streams", default="250,500,1000", help="stream counts (part 2)")
    parser.add_argument("--bursts", type=int, default=5, help="bursts per stream count")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    setup_django()
    from django.contrib.auth.models import User

    from accounts.models import Membership, Organization, Role
    from accounts.services import token_issue
    from agents.services import agent_create
    from jobs.models import Job, JobStatus
    from jobs.processes import WorkerProcess
    from tests.llm_server import LLMServer

    acme = Organization.objects.create(name="Acme", slug="acme")
    user = User.objects.create_user("bench")
    Membership.objects.create(user=user, organization=acme, role=Role.ADMIN)
    token = token_issue(user=user, name="bench")[1]
    agent = agent_create(
        organization=acme, created_by=user, name="streamer", provider="openai", model="gpt-4o-mini"
    )
    llm = LLMServer().start()
    # The worker logs at INFO: WorkerProcess waits for its "ready." line.
    env = dict(
        os.environ,
        OPENAI_BASE_URL=llm.openai_base_url,
        OPENAI_API_KEY="sk-bench",
        LOG_LEVEL="INFO",
    )
    log = Path("/tmp") / f"{QUEUE}.log"
    worker = WorkerProcess(log_path=log, env=env, queues=[QUEUE], hostname=f"bench-{QUEUE}@%h")
    port = free_port()
    web = start_server(port, workers=1)
    latencies: list[tuple[float, float]] = []
    chunks = 0
    rows = []
    try:
        if args.runs:
            worker.wait_ready()
            latencies, chunks = chunk_latency(
                port, token, agent, llm, args.runs, args.chunks, args.chunk_delay
            )
        stop(web)
        print(
            f"Countersign streaming benchmark: {os.cpu_count()} cores, one uvicorn "
            f"process, one worker, coalescing every "
            f"{os.environ.get('COUNTERSIGN_STREAM_COALESCE_SECONDS', '0.05')} s"
        )
        if latencies:
            p50, p99 = percentiles([chunk for chunk, _ in latencies])
            e50, e99 = percentiles([event for _, event in latencies])
            print(
                f"chunk -> SSE client: {chunks} chunks in {len(latencies)} events; "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (event emitted -> client: p50 "
                f"{e50:.1f} ms, p99 {e99:.1f} ms)"
            )
        for count in (int(n) for n in args.streams.split(",")):
            jobs = Job.objects.bulk_create(
                Job(
                    job_type="simple-task",
                    organization=acme,
                    status=JobStatus.WAITING,
                    wait_reason="checkpoint",
                )
                for _ in range(count + 1)
            )
            # A fresh web process for each count, so its memory is that count's alone.
            web = start_server(port, workers=1)
            warm_up(port, token, str(jobs[-1].pk))
            result = run(
                hold_streams(port, token, [str(j.pk) for j in jobs[:-1]], web.pid, args.bursts)
            )
            stop(web)
            rows.append((count, result))
            print(
                f"{count} streams: {result['opened']} open ({result['failed']} failed) in "
                f"{result['open_s']:.1f} s on {result['connections']} Redis subscriber "
                f"connection(s); {result['delivered']} got the event, all in "
                f"{result['all']:.0f} ms (p50 {result['p50']:.0f}, p99 {result['p99']:.0f}; "
                f"bursts {', '.join(f'{b:.0f}' for b in result['bursts'])} ms; publishing "
                f"{result['publish_ms']:.0f} ms; web process CPU {result['cpu_ms']:.0f} ms); "
                f"web RSS {result['rss_none']:.0f} MB with "
                f"none, {result['rss_idle']:.0f} MB idle with {count} "
                f"({result['per_stream_kb']:.0f} KB per stream), {result['rss']:.0f} MB after; "
                f"idle, the web process used {result['idle_cpu']:.1f}% of a core; "
                f"load average {result['load']:.1f}"
            )
    finally:
        stop(web)
        worker.stop()
        llm.stop()
        from core.metrics.recorder import forget_all

        forget_all()  # the benchmark's own metrics keys
    print("\n<!-- bench:streaming -->")
    print("| Measure | Result | Web process memory (RSS) |\n|---|---|---|")
    if latencies:
        print(
            f"| Chunk → SSE client latency ({chunks} chunks, {args.chunk_delay * 1000:.0f} ms "
            f"apart, {len(latencies)} events) | p50 {p50:.1f} ms, p99 {p99:.1f} ms | |"
        )
        print(
            f"| Event emitted by the worker → SSE client (without the coalescing wait) | "
            f"p50 {e50:.1f} ms, p99 {e99:.1f} ms | |"
        )
    for count, r in rows:
        print(
            f"| {count} concurrent streams on one process | {r['opened']} held "
            f"({r['failed']} refused) on {r['connections']} Redis connection(s); an event "
            f"to each: all delivered in {r['all']:.0f} ms (p50 {r['p50']:.0f}, "
            f"p99 {r['p99']:.0f}; web process CPU {r['cpu_ms']:.0f} ms) | "
            f"{r['rss_none']:.0f} MB with none, {r['rss_idle']:.0f} MB "
            f"with {count} idle: {r['per_stream_kb']:.0f} KB per stream; idle CPU "
            f"{r['idle_cpu']:.1f}% of a core |"
        )


def stop(web: subprocess.Popen[bytes]) -> None:
    if web.poll() is None:
        web.terminate()
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()


if __name__ == "__main__":
    main()
