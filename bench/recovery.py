"""Recovery time after faults, with production timings (reconciler every 5 s, 30 s grace).

Two scenarios, each on servers of the benchmark's own (a PostgreSQL cluster made with
initdb and a redis-server, on free ports), so restarting them disturbs nothing else:

- PostgreSQL restarted (`pg_ctl restart -m fast`, which ends every connection) while
  jobs are created at a steady rate: how long past the database's return each job took
  to finish. Target: at most 5 s for the worst job.
- Redis restarted empty while jobs wait in its queue (both worker slots held by slow
  jobs): how long past the broker's return until every lost job has run. Target: 10 s.

One worker (prefork, 2 processes, embedded beat). Run: `make bench-recovery`, or
`python bench/recovery.py --json` (tests/runtime/test_recovery_worker.py does, and
holds the targets).
"""

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_BIN = Path("/usr/lib/postgresql/15/bin")
QUEUE = f"countersign-bench-recovery-{uuid.uuid4().hex[:8]}"
DATABASE_TARGET_SECONDS = 5.0
BROKER_TARGET_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """A throwaway cluster (trust auth, no fsync: it holds only benchmark rows)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.data = root / "pgdata"
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run(
            as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust"])
            + ["-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        self._ctl("start")

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast"])
            + ["-o", options, "-l", str(self.data / "log"), action],
            check=True,
            capture_output=True,
        )

    def restart(self) -> None:
        """Every connection is ended; returns once the server accepts connections again."""
        self._ctl("restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop")


class PrivateRedis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL,
        )
        from jobs.processes import poll_until

        poll_until(self._up, timeout=10, what="redis-server to answer")
        return process

    def _up(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.RedisError:
            return False

    def restart_empty(self) -> None:
        """Stopped without saving and started again: every message it held is gone."""
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = self._start()

    def queue_length(self) -> int:
        import redis

        client = redis.Redis.from_url(self.url)
        return sum(int(client.llen(key)) for key in client.keys(f"{QUEUE}*"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def servers() -> Iterator[tuple[PrivatePostgres, PrivateRedis, Path]]:
    root = Path(tempfile.mkdtemp(prefix="countersign-recovery-"))
    root.chmod(0o755)  # the postgres user reaches its data folder inside
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        postgres = PrivatePostgres(root)
        stack.callback(postgres.stop)
        redis = PrivateRedis(root)
        stack.callback(redis.stop)
        yield postgres, redis, root


def setup_django(postgres: PrivatePostgres, redis: PrivateRedis, root: Path) -> None:
    os.environ.update(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis.url,
        CELERY_BROKER_URL=redis.url,
        COUNTERSIGN_QUEUE=QUEUE,
        COUNTERSIGN_HANDLER_MODULES="bench.handlers",
        COUNTERSIGN_WORKSPACE_ROOT=str(root / "workspaces"),
        COUNTERSIGN_DATA_DIR=str(root / "data"),
        LOG_LEVEL="WARNING",
    )
    for name in list(os.environ):  # production timings: nothing inherited shortens them
        if name.startswith(("COUNTERSIGN_RECONCILE", "COUNTERSIGN_LEASE", "COUNTERSIGN_HEART")):
            del os.environ[name]
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@dataclass
class Outcome:
    jobs: int
    worst_seconds: float  # past the server's return, for the worst job
    target_seconds: float
    refused_while_down: int = 0  # job creations that failed during the outage

    @property
    def met(self) -> bool:
        return self.worst_seconds <= self.target_seconds


def finished_at(ids: list[str], timeout: float) -> dict[str, float]:
    """Each job's finish time (epoch seconds), once all have succeeded."""
    from django.db import DatabaseError, connection

    from jobs.models import Job
    from jobs.processes import poll_until

    def all_done() -> dict[str, float]:  # empty until every job has succeeded
        try:
            rows = list(Job.objects.filter(pk__in=ids).values_list("pk", "status", "finished_at"))
        except DatabaseError:  # this process's connection, from before the restart
            connection.close()
            return {}
        done = {str(pk): at.timestamp() for pk, status, at in rows if at and status == "succeeded"}
        return done if len(done) == len(ids) else {}

    return poll_until(all_done, timeout=timeout, what=f"{len(ids)} jobs to succeed")


def database_restart(postgres: PrivatePostgres, load_seconds: float) -> Outcome:
    """Create a job every 50 ms; restart PostgreSQL halfway."""
    from django.db import DatabaseError, connection

    from accounts.services import default_organization
    from jobs.services import job_create

    organization = default_organization()
    created: list[tuple[str, float]] = []
    refused = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal refused
        while not stop.wait(0.05):
            try:
                job = job_create(job_type="bench-noop-1", organization=organization)
                created.append((str(job.pk), job.created_at.timestamp()))
            except DatabaseError:
                refused += 1
                connection.close()

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(load_seconds / 2)  # steady load before the fault
    postgres.restart()
    back = time.time()
    time.sleep(load_seconds / 2)
    stop.set()
    thread.join()
    done = finished_at([pk for pk, _ in created], timeout=120)
    worst = max(done[pk] - max(at, back) for pk, at in created)
    return Outcome(len(created), round(worst, 2), DATABASE_TARGET_SECONDS, refused)


def broker_restart(redis: PrivateRedis, slots: int, lost: int) -> Outcome:
    """Hold every worker slot, queue `lost` jobs behind them, restart Redis empty."""
    from accounts.services import default_organization
    from jobs.models import Job, JobStatus
    from jobs.processes import poll_until
    from jobs.services import job_create

    organization = default_organization()
    holders = [
        job_create(job_type="bench-hold", input={"seconds": 3}, organization=organization)
        for _ in range(slots)
    ]
    poll_until(
        lambda: (
            Job.objects.filter(pk__in=[h.pk for h in holders], status=JobStatus.RUNNING).count()
            == slots
        ),
        timeout=30,
        what="the slow jobs to hold every slot",
    )
    waiting = [job_create(job_type="bench-noop-1", organization=organization) for _ in range(lost)]
    poll_until(lambda: redis.queue_length() >= lost, timeout=10, what="the jobs' messages")
    redis.restart_empty()
    back = time.time()
    done = finished_at([str(job.pk) for job in waiting], timeout=120)
    return Outcome(lost, round(max(done.values()) - back, 2), BROKER_TARGET_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--load-seconds", type=float, default=8.0)
    args = parser.parse_args()
    with servers() as (postgres, redis, root):
        setup_django(postgres, redis, root)
        from jobs.processes import WorkerProcess

        worker = WorkerProcess(
            log_path=root / "worker.log",
            env=dict(os.environ, LOG_LEVEL="INFO"),  # its "ready." line is INFO
            queues=[QUEUE],
            hostname=f"{QUEUE}@%h",
            concurrency=2,
            beat=True,
            schedule_file=str(root / "beat-schedule"),
        )
        try:
            worker.wait_ready(timeout=120)
            results: dict[str, Any] = {
                "database_restart": database_restart(postgres, args.load_seconds),
                "broker_restart": broker_restart(redis, slots=2, lost=20),
            }
        except Exception:
            print(worker.tail(), file=sys.stderr)
            raise
        finally:
            worker.stop()
    if args.json:
        print(json.dumps({k: {**asdict(v), "met": v.met} for k, v in results.items()}))
        return
    print("| Fault | Jobs | Worst delay past the server's return | Target | Verdict |")
    print("|---|---|---|---|---|")
    for label, key in [
        ("PostgreSQL restarted under steady load", "database_restart"),
        ("Redis restarted empty, jobs queued", "broker_restart"),
    ]:
        outcome = results[key]
        print(
            f"| {label} | {outcome.jobs} | {outcome.worst_seconds:.2f} s | "
            f"≤ {outcome.target_seconds:.0f} s | {'PASS' if outcome.met else 'MISS'} |"
        )


if __name__ == "__main__":
    main()
