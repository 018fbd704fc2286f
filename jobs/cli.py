"""What the job commands print, and the hook through which apps above the runtime add
what they keep about a job (checkpoints/cli.py adds a job's checkpoints) without the
runtime knowing them."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone

from core.cli import fmt_clock, to_json, username
from jobs.models import Job, JobStep


@dataclass(frozen=True)
class JobAttachment:
    """Rows of another app that belong to a job (its checkpoints, say)."""

    name: str  # the section's title, and its key in JSON output
    columns: tuple[str, ...]  # the keys of each row shown in a table
    rows: Callable[[Job], list[dict[str, Any]]]  # all of the job's
    pending: Callable[[Job], list[dict[str, Any]]]  # those waiting for a person
    hints: Callable[[Job, list[dict[str, Any]]], list[str]]  # how to act on those


ATTACHMENTS: list[JobAttachment] = []


def register_job_attachment(attachment: JobAttachment) -> None:
    if all(known.name != attachment.name for known in ATTACHMENTS):
        ATTACHMENTS.append(attachment)


def get_job(job_id: str) -> Job:
    try:
        pk = uuid.UUID(str(job_id))
    except ValueError:
        raise CommandError(f"no job with id {job_id!r} (job ids are UUIDs)") from None
    job = Job.objects.select_related("created_by").filter(pk=pk).first()
    if job is None:
        raise CommandError(f"no job with id {job_id!r}")
    return job


def job_duration(job: Job) -> float | None:
    """Run time; for a job still going, the time since it started."""
    if job.started_at and not job.finished_at:
        return (timezone.now() - job.started_at).total_seconds()
    return job.duration_seconds


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "status": job.status,
        "job_type": job.job_type,
        "priority": job.priority,
    }


def job_dict(job: Job) -> dict[str, Any]:
    return {
        **job_summary(job),
        "wait_reason": job.wait_reason,
        "wake_at": job.wake_at,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "input": job.input,
        "result": job.result,
        "error_type": job.error_type,
        "error_message": job.error_message,
        "idempotency_key": job.idempotency_key,
        "parent_id": str(job.parent_id) if job.parent_id else None,
        "created_by": username(job.created_by),
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "duration_seconds": job.duration_seconds,
        "tokens_in": job.tokens_in,
        "tokens_out": job.tokens_out,
        "cost": job.cost,
    }


def step_dict(step: JobStep) -> dict[str, Any]:
    return {
        "key": step.key,
        "position": step.position,
        "kind": step.kind,
        "status": step.status,
        "attempt": step.attempt,
        "error": step.error,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_seconds": step.duration_seconds,
    }


def event_line(event: dict[str, Any]) -> str:
    """One event ({"seq", "kind", "data", "created_at"}, as followers see it) on a line."""
    data = f"  {to_json(event['data'], pretty=False)}" if event["data"] else ""
    when = fmt_clock(datetime.fromisoformat(event["created_at"]))
    return f"  {when}  #{event['seq']:<3} {event['kind']}{data}"
