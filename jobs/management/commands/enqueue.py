"""`manage.py enqueue JOB_TYPE --input JSON [--wait]`: start a job from the shell."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import command_organization
from core.cli import find_user, fmt_duration, parse_json, to_json
from jobs.cli import ATTACHMENTS, event_line, job_summary
from jobs.follow import follow, paused_or_ended
from jobs.models import Job, JobStatus
from jobs.runtime import JobError
from jobs.services import job_get_or_create

# Exit codes of --wait.
EXIT_FAILED = 1
EXIT_TIMEOUT = 2


def outcome_dict(job: Job) -> dict[str, Any]:
    """The last JSON line of --wait --json."""
    error = f"{job.error_type}: {job.error_message}" if job.error_type else None
    return {
        **job_summary(job),
        "result": job.result,
        "error": error,
        "duration_seconds": job.duration_seconds,
        **{f"pending_{a.name}": a.pending(job) for a in ATTACHMENTS},
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
        except TimeoutError:
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
        try:
            job, created = job_get_or_create(
                job_type=options["job_type"],
                input=data,
                priority=options["priority"],
                created_by=user,
                idempotency_key=key,
                organization=command_organization(options["org"], user),
            )
        except JobError as exc:
            raise CommandError(str(exc)) from None
        if not created:
            self.stderr.write(f"idempotency key {key!r} was used before: this is that job")
        return job

    def follow(self, job: Job, *, as_json: bool, timeout: float | None) -> Job:
        """Print the job's events as they happen, until it ends or pauses."""
        for event in follow(str(job.pk), until=paused_or_ended, timeout=timeout):
            self.stdout.write(
                to_json({"job_id": str(job.pk), **event}, pretty=False)
                if as_json
                else event_line(event)
            )
            self.stdout.flush()  # live, even when piped
        job.refresh_from_db()
        return job

    def report(self, job: Job, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(to_json(outcome_dict(job), pretty=False))
            return
        line = f"job {job.pk} {job.status}"
        if job.status == JobStatus.WAITING:
            self.stdout.write(self.style.WARNING(f"{line} for {job.wait_reason or 'something'}"))
            for attachment in ATTACHMENTS:
                for hint in attachment.hints(job, attachment.pending(job)):
                    self.stdout.write(hint)
        elif job.status == JobStatus.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(f"{line} in {fmt_duration(job.duration_seconds)}"))
            self.stdout.write(f"  result: {to_json(job.result, pretty=False)}")
        else:
            error = f": {job.error_type}: {job.error_message}" if job.error_type else ""
            self.stdout.write(self.style.ERROR(line + error))
