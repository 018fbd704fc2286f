"""API benchmark: requests per second and p50/p99 latency on loopback.

Three scenarios against the web server as production runs it (uvicorn serving
config.asgi with 2 worker processes, DEBUG off, requests arriving as through the
TLS proxy) on a fresh PostgreSQL database holding 100 000 checkpoints:

- job create: POST /api/v1/jobs/ (simple-task; messages go to a queue nobody
  consumes, purged at the end);
- checkpoint list: GET /api/v1/checkpoints/?status=pending (the reviewer's view,
  pending first, paginated by 50);
- approve: POST /api/v1/checkpoints/ID/approve/, each request a different
  pending checkpoint;

and /healthz, a view that does nothing, for reference.

Load: N client threads, each with its own keep-alive connection, for a fixed
number of requests (bounded, closed-loop). Run: `make bench-api`, or
`python bench/api.py --help`.
"""

import argparse
import http.client
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE = "countersign_bench_api"
QUEUE = f"countersign-bench-api-{uuid.uuid4().hex[:8]}"
CHECKPOINTS = 100_000
PENDING = 5_000


def setup_django() -> str:
    sys.path.insert(0, str(ROOT))
    from bench.database import fresh_database

    url = fresh_database(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"), BENCH_DATABASE
    )
    os.environ.update(
        DATABASE_URL=url,
        COUNTERSIGN_QUEUE=QUEUE,
        COUNTERSIGN_METRICS_PREFIX=f"countersign-bench:{QUEUE}:metrics",
        # As in production: DEBUG off (no query log kept per request), so a key is needed.
        DEBUG="0",
        SECRET_KEY="bench-api-only",
        LOG_LEVEL="WARNING",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return url


def seed(total: int, pending: int) -> tuple[str, list[int]]:
    """An organization with `total` checkpoints (`pending` of them pending) and an
    approver's token. Bulk inserts: the point is the table's size, not its history."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from accounts.models import Membership, Organization, Role
    from accounts.services import token_issue
    from checkpoints.models import Checkpoint, CheckpointStatus
    from jobs.models import Job, JobStatus

    acme = Organization.objects.create(name="Acme", slug="acme")
    user = User.objects.create_user("bench-admin")
    Membership.objects.create(user=user, organization=acme, role=Role.ADMIN)
    token = token_issue(user=user, name="bench")[1]
    now = timezone.now()
    batch = 10_000
    for start in range(0, total, batch):
        size = min(batch, total - start)
        jobs = Job.objects.bulk_create(
            Job(
                job_type="code-generation",
                organization=acme,
                status=JobStatus.WAITING,
                wait_reason="checkpoint",
                input={"prompt": f"job {start + i}"},
            )
            for i in range(size)
        )
        Checkpoint.objects.bulk_create(
            Checkpoint(
                job=job,
                organization=acme,
                key="write-files",
                title=f"Write files for job {start + i}",
                payload={"files": [{"path": "a.py", "content": "x = 1\n", "diff": "+x = 1\n"}]},
                status=(
                    CheckpointStatus.PENDING if start + i < pending else CheckpointStatus.APPROVED
                ),
                decided_at=None if start + i < pending else now,
            )
            for i, job in enumerate(jobs)
        )
    # As autovacuum leaves a table after a bulk insert (PostgreSQL 13 and later vacuum on
    # inserts too): fresh statistics, and a visibility map, so that counting the pending
    # queue reads its index alone. Before 2026-12-02 this was ANALYZE only (see
    # docs/performance.md).
    # CHECKPOINT: the seeding's writes are flushed now, not during the first scenario.
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        try:
            cursor.execute("CHECKPOINT")
        except DatabaseError as exc:  # a superuser's or pg_checkpoint's right
            print(f"(no CHECKPOINT after seeding: {exc}; the first scenario may be slower)")
    pending_ids = list(
        Checkpoint.objects.filter(status=CheckpointStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return token, pending_ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, workers: int, checkout: Path = ROOT) -> subprocess.Popen[bytes]:
    """The web process of `checkout` (this one by default), as runstack starts it."""
    from jobs.processes import web_argv  # the command line runstack uses

    server = subprocess.Popen(
        web_argv(port=port, workers=workers, log_level="warning", access_log=False),
        cwd=checkout,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:  # /healthz is exempt from the HTTPS redirect
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit("uvicorn did not start")


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    def row(self) -> str:
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return (
            f"  {self.name:<34} {self.requests:>6} {self.requests / self.seconds:>8.0f}"
            f" {cuts[49]:>8.1f} {cuts[98]:>8.1f} {self.errors:>6}"
        )


Request = Callable[[int], tuple[str, str, bytes | None]]  # i -> (method, path, body)


def load(
    name: str, port: int, token: str, make: Request, requests: int, clients: int, expect: int
) -> Result:
    """`clients` threads share `requests` requests, each on its own keep-alive connection."""
    todo: queue.Queue[int] = queue.Queue()
    for i in range(requests):
        todo.put(i)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "X-Forwarded-Proto": "https",  # what the TLS proxy in front of production says
    }

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            method, path, body = make(i)
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if response.status != expect:
                    errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(name, requests, time.perf_counter() - started, latencies, errors[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per scenario")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, default=CHECKPOINTS)
    args = parser.parse_args()

    setup_django()
    seeding = time.perf_counter()
    pending = min(PENDING, args.checkpoints)
    token, pending_ids = seed(args.checkpoints, max(pending, args.requests))
    print(
        f"Countersign API benchmark: {args.checkpoints} checkpoints seeded in "
        f"{time.perf_counter() - seeding:.1f}s; {os.cpu_count()} cores; uvicorn with "
        f"{args.server_workers} worker process(es) of {os.environ.get('WEB_THREADS', 8)} "
        f"threads; {args.clients} keep-alive clients"
    )
    port = free_port()
    server = start_server(port, args.server_workers)
    try:
        create = json.dumps({"job_type": "simple-task", "input": {"n": 1}}).encode()
        results = [
            load(
                "job create (POST /jobs/)",
                port,
                token,
                lambda i: ("POST", "/api/v1/jobs/", create),
                args.requests,
                args.clients,
                201,
            ),
            load(
                "checkpoint list (pending, 50/page)",
                port,
                token,
                lambda i: ("GET", "/api/v1/checkpoints/?status=pending", None),
                args.requests,
                args.clients,
                200,
            ),
            load(
                "approve (POST /checkpoints/ID/approve/)",
                port,
                token,
                lambda i: ("POST", f"/api/v1/checkpoints/{pending_ids[i]}/approve/", b"{}"),
                args.requests,
                args.clients,
                200,
            ),
            load(
                "healthz (a view that does nothing)",
                port,
                token,
                lambda i: ("GET", "/healthz", None),
                args.requests,
                args.clients,
                200,
            ),
        ]
    finally:
        server.terminate()
        server.wait(timeout=20)
        purge_queue()
        from core.metrics.recorder import forget_all

        forget_all()  # the benchmark's own metrics keys
    print(f"  {'scenario':<34} {'reqs':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for result in results:
        print(result.row())
    print("\n<!-- bench:api -->")
    print("| Scenario | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
    for r in results:
        cuts = statistics.quantiles(r.latencies_ms, n=100, method="inclusive")
        print(
            f"| {r.name} | {r.requests / r.seconds:.0f} | {cuts[49]:.1f} | {cuts[98]:.1f} "
            f"| {r.errors} |"
        )


def purge_queue() -> None:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(QUEUE)
    except Exception as exc:  # the figures stand; say what was left behind
        print(f"(could not delete the queue {QUEUE}: {exc})")


if __name__ == "__main__":
    main()
