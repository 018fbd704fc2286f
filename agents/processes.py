"""Command lines for Celery worker and beat processes with the project's safe defaults.

Used by `runworker`, `runstack`, the test suite and the benchmarks, so every
worker in every setting starts the same way.
"""

import sys
from collections.abc import Sequence

from django.conf import settings


def worker_argv(*, concurrency: int = 2, queues: Sequence[str] | None = None,
                hostname: str | None = None, loglevel: str = "INFO", pool: str = "prefork",
                beat: bool = False, schedule_file: str | None = None) -> list[str]:
    """`-O fair` and prefetch 1 (from settings) keep short jobs from queueing
    behind long ones; acks_late and reject-on-worker-lost are task settings."""
    argv = [sys.executable, "-m", "celery", "-A", "config", "worker",
            "--loglevel", loglevel, "--concurrency", str(concurrency), "--pool", pool,
            "-O", "fair", "--queues", ",".join(queues or [settings.CELERY_TASK_DEFAULT_QUEUE])]
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
