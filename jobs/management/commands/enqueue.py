"""`manage.py enqueue JOB_TYPE --input JSON [--wait]`: start a job from the shell."""

import time
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from accounts.roles import organization_of
from accounts.services import default_organization
from core.cli import (
    decision_hints,
    event_dict,
    event_line,
    find_user,
    fmt_duration,
    job_checkpoints,
    job_summary,
    parse_json,
    to_json,
    username,
)
from jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobStatus
from jobs.runtime.errors import UnknownJobType
from jobs.services import JobError, job_create

POLL_SECONDS = 0.2
# A run writes the job's status first and its closing event (job.waiting,
# job.failed, ...) just after; wait this long for that event so the log is whole.
SETTLE_SECONDS = 1.0
# Exit codes of --wait.
EXIT_FAILED = 1
EXIT_TIMEOUT = 2


class FollowTimeout(Exception):
    pass


def stops_following(job: Job) -> bool:
    """Terminal, or paused for something outside the job. A timer wait (`ctx.sleep`,
    a retry back-off) ends by itself, so following goes on through it."""
    if job.status in TERMINAL_STATUSES:
        return True
    return job.status == JobStatus.WAITING and job.wait_reason != "timer"


def outcome_dict(job: Job, pending: list[Any]) -> dict[str, Any]:
    """The last JSON line of --wait --json."""
    error = f"{job.error_type}: {job.error_message}" if job.error_type else None
    return {
        **job_summary(job),
        "result": job.result,
        "error": error,
        "duration_seconds": job.duration_seconds,
        "pending_checkpoints": [{"id": c.pk, "kind": c.kind, "title": c.title} for c in pending],
    }


class Command(BaseCommand):
    help = (
        "Create a job of JOB_TYPE and print its id. With --wait, follow its progress "
        "until it finishes or pauses at a checkpoint (exit 0 succeeded or waiting, "
        "1 failed/rejected/cancelled, 2 timed out)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job_type", help="a registered job type, e.g. code-generation")
        parser.add_argument(
            "--input", default="{}", help="the job input: a JSON object, or @file.json (default {})"
        )
        parser.add_argument(
            "--priority", type=int, default=5, help="0 (lowest) to 9 (most urgent); default 5"
        )
        parser.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            help="the user who starts the job (default: $COUNTERSIGN_USER, else nobody)",
        )
        parser.add_argument(
            "--org",
            metavar="SLUG",
            help="the organization the job belongs to (default: the --as user's, else "
            "$COUNTERSIGN_DEFAULT_ORGANIZATION)",
        )
        parser.add_argument(
            "--idempotency-key",
            default="",
            help="a repeat with the same key (and user) returns the first job",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="follow the job's events until it finishes or pauses",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="with --wait: give up after this long (exit code 2)",
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        job = self.create(options)
        if as_json:
            self.stdout.write(to_json(job_summary(job), pretty=not options["wait"]))
        else:
            self.stdout.write(str(job.pk))
        if not options["wait"]:
            return
        try:
            job = self.follow(job, as_json=as_json, timeout=options["timeout"])
        except FollowTimeout:
            raise CommandError(
                f"timed out after {options['timeout']}s; job {job.pk} is still "
                f"{job.status} and goes on (see: python manage.py jobs show "
                f"{job.pk})",
                returncode=EXIT_TIMEOUT,
            ) from None
        except KeyboardInterrupt:
            raise CommandError(f"stopped following; job {job.pk} goes on", returncode=130) from None
        self.report(job, as_json=as_json)
        if job.status not in (JobStatus.SUCCEEDED, JobStatus.WAITING):
            raise CommandError(f"job {job.pk} {job.status}", returncode=EXIT_FAILED)

    def create(self, options: dict[str, Any]) -> Job:
        data = parse_json(options["input"], "--input")
        if not isinstance(data, dict):
            raise CommandError('--input must be a JSON object, e.g. \'{"prompt": "..."}\'')
        user = find_user(options["as_user"])
        key = options["idempotency_key"]
        repeated = bool(key) and Job.objects.filter(created_by=user, idempotency_key=key).exists()
        try:
            job = job_create(
                job_type=options["job_type"],
                input=data,
                priority=options["priority"],
                created_by=user,
                idempotency_key=key,
                organization=self.organization(options["org"], user),
            )
        except (JobError, UnknownJobType) as exc:
            raise CommandError(str(exc)) from None
        if repeated:
            self.stderr.write(f"idempotency key {key!r} was used before: this is that job")
        return job

    def organization(self, slug: str | None, user: User | None) -> Organization:
        member_of = organization_of(user)
        if slug is None:
            return member_of or default_organization()
        try:
            organization = default_organization(slug)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if member_of is not None and member_of.pk != organization.pk:
            raise CommandError(f"{user} belongs to {member_of.slug}, not {slug}")
        return organization

    def follow(self, job: Job, *, as_json: bool, timeout: float | None) -> Job:
        """Print the job's events as they are written, polling the database."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_seq, last_kind = 0, ""
        stopped_at: float | None = None
        while True:
            # Status before events: an event written after this read shows next round.
            job.refresh_from_db(
                fields=["status", "wait_reason", "wake_at", "finished_at", "started_at"]
            )
            for event in JobEvent.objects.filter(job_id=job.pk, seq__gt=last_seq).order_by("seq"):
                self.stdout.write(
                    to_json(event_dict(event), pretty=False) if as_json else event_line(event)
                )
                last_seq, last_kind = event.seq, event.kind
            self.stdout.flush()  # live, even when piped
            if stops_following(job):
                stopped_at = stopped_at or time.monotonic()
                if (
                    last_kind == f"job.{job.status}"
                    or time.monotonic() - stopped_at >= SETTLE_SECONDS
                ):
                    return job
            else:
                stopped_at = None
            if deadline is not None and time.monotonic() >= deadline:
                raise FollowTimeout()
            time.sleep(POLL_SECONDS)

    def report(self, job: Job, *, as_json: bool) -> None:
        job.refresh_from_db()
        pending = job_checkpoints(job, pending_only=True)
        if as_json:
            self.stdout.write(to_json(outcome_dict(job, pending), pretty=False))
            return
        line = f"job {job.pk} {job.status}"
        if job.status == JobStatus.WAITING:
            self.stdout.write(self.style.WARNING(f"{line} for {job.wait_reason or 'something'}"))
            for hint in decision_hints(pending, username(job.created_by)):
                self.stdout.write(hint)
        elif job.status == JobStatus.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(f"{line} in {fmt_duration(job.duration_seconds)}"))
            self.stdout.write(f"  result: {to_json(job.result, pretty=False)}")
        else:
            error = f": {job.error_type}: {job.error_message}" if job.error_type else ""
            self.stdout.write(self.style.ERROR(line + error))
