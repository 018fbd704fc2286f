"""`manage.py prune [--older-than AGE] [--dry-run] [--json]`: the retention pass by hand,
batch after batch until nothing is left (jobs/retention.py)."""

import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import fmt_time, table, to_json
from jobs.retention import PruneReport, retention_prune

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_AGE = timedelta(days=36500)


def parse_age(raw: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`: a positive whole number and its unit."""
    match = re.fullmatch(r"([0-9]{1,12})([dhms])", raw.strip())
    if match is None or int(match[1]) == 0:
        raise CommandError(
            f"--older-than {raw!r}: give a positive age and its unit (d, h, m or s), "
            "e.g. 30d, 12h or 90m"
        )
    age = timedelta(seconds=int(match[1]) * UNITS[match[2]])
    if age > MAX_AGE:
        raise CommandError(f"--older-than {raw!r}: at most {MAX_AGE.days}d")
    return age


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than an age, with their steps, events, checkpoints, child "
        "jobs and workspaces (their decisions kept for COUNTERSIGN_DECISION_RETENTION_DAYS), "
        "and Celery task results past CELERY_RESULT_EXPIRES."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="AGE",
            help="jobs that finished longer ago than this go: 30d, 12h, 90m "
            "(default: COUNTERSIGN_RETENTION_DAYS)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.COUNTERSIGN_RETENTION_BATCH,
            help="jobs (or rows) per transaction (default: COUNTERSIGN_RETENTION_BATCH)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] is not None:
            older_than = parse_age(options["older_than"])
        elif settings.COUNTERSIGN_RETENTION_DAYS > 0:
            older_than = timedelta(days=settings.COUNTERSIGN_RETENTION_DAYS)
        else:
            raise CommandError(
                "jobs are kept forever (COUNTERSIGN_RETENTION_DAYS is 0): say how old a "
                "finished job must be to go, e.g. --older-than 30d"
            )
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        report = retention_prune(
            older_than=older_than, batch_size=options["batch_size"], dry_run=options["dry_run"]
        )
        if options["json"]:
            self.stdout.write(to_json(report_dict(report, older_than)))
        else:
            self.write_report(report)

    def write_report(self, report: PruneReport) -> None:
        verb = "Would delete" if report.dry_run else "Deleted"
        self.stdout.write(f"{verb} (jobs finished before {fmt_time(report.cutoff)}):")
        self.stdout.write(table(["KIND", "ROWS"], sorted(report.deleted.items())))
        kept = [(label, n) for label, n in sorted(report.kept.items()) if n]
        if kept:
            self.stdout.write("Kept beyond their jobs, until their own age:")
            self.stdout.write(table(["KIND", "ROWS"], kept))


def report_dict(report: PruneReport, older_than: timedelta) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "older_than_seconds": int(older_than.total_seconds()),
        "cutoff": report.cutoff,
        "batches": report.batches,
        "deleted": dict(sorted(report.deleted.items())),
        "kept": dict(sorted(report.kept.items())),
    }
