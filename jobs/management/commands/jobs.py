"""`manage.py jobs list|show|cancel|retry`: look at jobs and steer them."""

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import find_user, fmt_duration, fmt_time, shorten, table, to_json, username
from jobs.cli import (
    ATTACHMENTS,
    event_line,
    get_job,
    job_dict,
    job_duration,
    job_summary,
    step_dict,
)
from jobs.models import Job, JobStatus
from jobs.runtime import JobConflict
from jobs.runtime.events import event_dict
from jobs.selectors import job_steps
from jobs.services import job_cancel, job_retry

SHOW_EVENTS = 15


class Command(BaseCommand):
    help = "List, inspect, cancel and retry jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        listing = actions.add_parser("list", help="recent jobs, newest first")
        listing.add_argument("--status", choices=JobStatus.values)
        listing.add_argument("--type", dest="job_type", metavar="JOB_TYPE")
        listing.add_argument("--limit", type=int, default=20)
        listing.add_argument("--json", action="store_true")

        show = actions.add_parser("show", help="one job: fields, steps, checkpoints, events")
        show.add_argument("job_id")
        show.add_argument(
            "--events",
            type=int,
            default=SHOW_EVENTS,
            help=f"how many of the last events to show (default {SHOW_EVENTS})",
        )
        show.add_argument("--json", action="store_true")

        for name, text in (
            ("cancel", "cancel a job (a running one stops at its next step)"),
            ("retry", "run a failed or cancelled job again from where it stopped"),
        ):
            sub = actions.add_parser(name, help=text)
            sub.add_argument("job_id")
            sub.add_argument(
                "--as",
                dest="as_user",
                metavar="USER",
                help="who does it (default: $COUNTERSIGN_USER)",
            )
            sub.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    # --- list -------------------------------------------------------------------------
    def do_list(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        qs = Job.objects.order_by("-created_at")
        if options["status"]:
            qs = qs.filter(status=options["status"])
        if options["job_type"]:
            qs = qs.filter(job_type=options["job_type"])
        jobs = list(qs[: options["limit"]])
        if options["json"]:
            self.stdout.write(
                to_json(
                    [
                        {
                            **job_summary(j),
                            "attempts": j.attempts,
                            "created_at": j.created_at,
                            "duration_seconds": job_duration(j),
                        }
                        for j in jobs
                    ]
                )
            )
            return
        if not jobs:
            self.stdout.write("no jobs")
            return
        self.stdout.write(
            table(
                ["ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "DURATION"],
                [
                    [
                        j.pk,
                        j.job_type,
                        j.status,
                        j.priority,
                        f"{j.attempts}/{j.max_attempts}",
                        fmt_time(j.created_at),
                        fmt_duration(job_duration(j)),
                    ]
                    for j in jobs
                ],
            )
        )
        total = qs.count()
        if total > len(jobs):
            self.stdout.write(f"({len(jobs)} of {total}; use --limit to see more)")

    # --- show -------------------------------------------------------------------------
    def do_show(self, options: dict[str, Any]) -> None:
        job = get_job(options["job_id"])
        steps = list(job_steps(job))
        attached = {a.name: a.rows(job) for a in ATTACHMENTS}
        events = [event_dict(e) for e in job.events.order_by("-seq")[: max(options["events"], 0)]]
        events.reverse()
        if options["json"]:
            self.stdout.write(
                to_json(
                    {
                        **job_dict(job),
                        "error_traceback": job.error_traceback,
                        "steps": [step_dict(s) for s in steps],
                        **attached,
                        "events": [{"job_id": str(job.pk), **e} for e in events],
                    }
                )
            )
            return
        self.write_fields(job)
        self.section(
            "Steps",
            table(
                ["KEY", "KIND", "STATUS", "ATTEMPT", "DURATION"],
                [
                    [s.key, s.kind, s.status, s.attempt, fmt_duration(s.duration_seconds)]
                    for s in steps
                ],
            )
            if steps
            else "",
        )
        for attachment in ATTACHMENTS:
            rows = attached[attachment.name]
            self.section(
                attachment.name.capitalize(),
                table(
                    [column.upper() for column in attachment.columns],
                    [[shorten(str(row[c]), 60) for c in attachment.columns] for row in rows],
                )
                if rows
                else "",
            )
        total = job.events.count()
        heading = f"Events (last {len(events)} of {total})" if total > len(events) else "Events"
        self.section(heading, "\n".join(event_line(e) for e in events))
        if job.error_type or job.error_message:
            self.section("Error", f"  {job.error_type}: {job.error_message}")
            tail = job.error_traceback.strip().splitlines()[-12:]
            if tail:
                self.stdout.write("\n".join("    " + line for line in tail))

    def write_fields(self, job: Job) -> None:
        status = job.status + (f" ({job.wait_reason})" if job.wait_reason else "")
        if job.cancel_requested and job.status == JobStatus.RUNNING:
            status += " (cancel requested)"
        fields = [
            ("Job", str(job.pk)),
            ("Type", job.job_type),
            ("Status", status),
            ("Priority", job.priority),
            ("Attempts", f"{job.attempts}/{job.max_attempts}"),
            ("Created by", username(job.created_by) or "-"),
            ("Created", fmt_time(job.created_at)),
            ("Started", fmt_time(job.started_at)),
            ("Finished", fmt_time(job.finished_at)),
            ("Duration", fmt_duration(job_duration(job))),
        ]
        if job.wake_at:
            fields.append(("Wakes at", fmt_time(job.wake_at)))
        if job.parent_id:
            fields.append(("Parent", str(job.parent_id)))
        if job.tokens_in or job.tokens_out:
            fields.append(("Tokens", f"{job.tokens_in} in / {job.tokens_out} out"))
        if job.cost is not None:
            fields.append(("Cost", str(job.cost)))
        fields.append(("Input", shorten(to_json(job.input, pretty=False), 200)))
        if job.result is not None:
            fields.append(("Result", shorten(to_json(job.result, pretty=False), 200)))
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            self.stdout.write(f"{name + ':':<{width + 1}} {value}")

    def section(self, title: str, body: str) -> None:
        self.stdout.write(f"\n{title}:")
        self.stdout.write(body if body else "  (none)")

    # --- cancel / retry ---------------------------------------------------------------
    def do_cancel(self, options: dict[str, Any]) -> None:
        self.change(options, job_cancel)

    def do_retry(self, options: dict[str, Any]) -> None:
        self.change(options, job_retry)

    def change(self, options: dict[str, Any], service: Callable[..., Job]) -> None:
        job = get_job(options["job_id"])
        user = find_user(options["as_user"])
        try:
            job = service(job=job, user=user)
        except JobConflict as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(
                to_json({**job_summary(job), "cancel_requested": job.cancel_requested})
            )
        elif job.status == JobStatus.RUNNING:
            self.stdout.write(f"job {job.pk} is running; it stops at its next step")
        else:
            self.stdout.write(self.style.SUCCESS(f"job {job.pk} is now {job.status}"))
