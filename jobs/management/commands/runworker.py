"""`manage.py runworker`: become a Celery worker with the project's safe defaults."""

import os
import shlex
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import to_json
from jobs.processes import worker_argv


def split_queues(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    queues = [q.strip() for q in raw.split(",") if q.strip()]
    if not queues:
        raise CommandError("--queues needs at least one queue name")
    return queues


def beat_schedule_file() -> str:
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    return str(settings.DATA_DIR / "celerybeat-schedule")


class Command(BaseCommand):
    help = (
        "Replace this process with a Celery worker (acks late, prefetch 1, -O fair). "
        "--beat also runs the periodic reconciler and checkpoint expiry in it; run beat "
        "in exactly one process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=2, help="pool size (default 2)")
        parser.add_argument(
            "--queues",
            help=f"comma-separated queues (default: {settings.CELERY_TASK_DEFAULT_QUEUE})",
        )
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--pool", default="prefork", help="prefork (default), threads, solo")
        parser.add_argument("--hostname", help="the worker's node name, e.g. w1@%%h")
        parser.add_argument("--beat", action="store_true", help="embed the beat scheduler")
        parser.add_argument(
            "--dry-run", action="store_true", help="print the command line instead of running it"
        )
        parser.add_argument(
            "--json", action="store_true", help='print the command line as JSON ({"argv": [...]})'
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        argv = worker_argv(
            concurrency=options["concurrency"],
            queues=split_queues(options["queues"]),
            hostname=options["hostname"],
            loglevel=options["loglevel"],
            pool=options["pool"],
            beat=options["beat"],
            schedule_file=beat_schedule_file() if options["beat"] else None,
        )
        if options["json"]:
            self.stdout.write(to_json({"argv": argv, "cwd": str(settings.BASE_DIR)}, pretty=False))
        else:
            self.stdout.write(shlex.join(argv))
        if options["dry_run"]:
            return
        self.stdout.flush()
        # `celery -A config` imports the project from the working directory.
        os.chdir(settings.BASE_DIR)
        os.execv(argv[0], argv)
