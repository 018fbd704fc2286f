"""Command lines for the web server and Celery worker and beat processes with the
project's safe defaults.

Used by `runworker`, `runstack`, the test suite and the benchmarks, so every
process in every setting starts the same way.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")


def web_argv(
    *,
    port: int,
    host: str = "127.0.0.1",
    workers: int | None = None,
    log_level: str | None = None,
    access_log: bool = True,
) -> list[str]:
    """uvicorn serving config.asgi (sync views on threads, the event stream on the loop)
    with its C HTTP parser and event loop, named so that a missing one fails at start
    instead of falling back to h11, which costs 5 times the CPU per request and stalls
    40 ms between a response's header and body."""
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
    ]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if log_level:
        argv += ["--log-level", log_level]
    if not access_log:
        argv += ["--no-access-log"]
    return argv


def worker_argv(
    *,
    concurrency: int = 2,
    queues: Sequence[str] | None = None,
    hostname: str | None = None,
    loglevel: str = "INFO",
    pool: str = "prefork",
    beat: bool = False,
    schedule_file: str | None = None,
) -> list[str]:
    """`-O fair` and prefetch 1 (from settings) keep short jobs from queueing
    behind long ones; acks_late and reject-on-worker-lost are task settings."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel",
        loglevel,
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "-O",
        "fair",
        "--queues",
        ",".join(queues or [settings.CELERY_TASK_DEFAULT_QUEUE]),
    ]
    if hostname:
        argv += ["--hostname", hostname]
    if beat:
        argv += ["--beat"]
        if schedule_file:
            argv += ["--schedule", schedule_file]
    return argv


def beat_argv(*, loglevel: str = "INFO", schedule_file: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", loglevel]
    if schedule_file:
        argv += ["--schedule", schedule_file]
    return argv


def poll_until(
    predicate: Callable[[], T], *, timeout: float, what: str = "a condition", interval: float = 0.05
) -> T:
    """Poll `predicate` until it returns something truthy; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """A `celery worker` subprocess in its own process group, logging to a file.

    For the test suite and the benchmarks: start it, wait for "ready.", stop it.
    """

    def __init__(
        self,
        *,
        log_path: Path,
        env: Mapping[str, str],
        queues: Sequence[str],
        hostname: str,
        concurrency: int = 1,
        beat: bool = False,
        schedule_file: str | None = None,
    ) -> None:
        self.name = hostname
        self.log_path = log_path
        argv = worker_argv(
            concurrency=concurrency,
            queues=queues,
            hostname=hostname,
            beat=beat,
            schedule_file=schedule_file,
        )
        self.log = open(log_path, "w")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            argv,
            env=dict(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.tail()}")
            return "ready." in self.log_path.read_text()

        poll_until(ready, timeout=timeout, what=f"the worker to be ready ({self.log_path})")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
