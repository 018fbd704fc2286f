"""Helpers shared by the management commands: arguments, lookups, JSON and tables.

Checkpoints are reached only through the `job.checkpoints` reverse relation, so
this module (like the runtime) imports nothing from the checkpoints app.
"""

import json
import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User
from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from jobs.models import Job, JobEvent, JobStep

USER_ENV = "COUNTERSIGN_USER"


# --- arguments ------------------------------------------------------------------------


def parse_json(raw: str, option: str) -> Any:
    """JSON given inline, or `@path` to read it from a file."""
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise CommandError(f"{option}: cannot read {raw[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{option} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def acting_username(given: str | None) -> str:
    """--as USER, else $COUNTERSIGN_USER, else ""."""
    return (given or os.environ.get(USER_ENV, "")).strip()


def find_user(given: str | None, *, required: bool = False, action: str = "do this") -> User | None:
    """The acting user named by --as or $COUNTERSIGN_USER; CommandError if unknown."""
    username = acting_username(given)
    if not username:
        if required:
            raise CommandError(
                f"say who you are to {action}: pass --as USERNAME (or set {USER_ENV})"
            )
        return None
    try:
        return User.objects.get_by_natural_key(username)
    except User.DoesNotExist:
        raise CommandError(f"no user named {username!r}") from None


def get_job(job_id: str) -> Job:
    try:
        pk = uuid.UUID(str(job_id))
    except ValueError:
        raise CommandError(f"no job with id {job_id!r} (job ids are UUIDs)") from None
    job = Job.objects.select_related("created_by").filter(pk=pk).first()
    if job is None:
        raise CommandError(f"no job with id {job_id!r}")
    return job


# --- formatting -------------------------------------------------------------------------


def to_json(data: Any, *, pretty: bool = True) -> str:
    if pretty:
        return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


def fmt_time(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def fmt_clock(value: datetime) -> str:
    return timezone.localtime(value).strftime("%H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def shorten(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain, left-aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def username(user: AbstractBaseUser | None) -> str | None:
    return user.get_username() if user is not None else None


# --- jobs as data ------------------------------------------------------------------------


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


def event_dict(event: JobEvent) -> dict[str, Any]:
    return {
        "job_id": str(event.job_id),
        "seq": event.seq,
        "kind": event.kind,
        "data": event.data,
        "created_at": event.created_at,
    }


def event_line(event: JobEvent) -> str:
    data = f"  {to_json(event.data, pretty=False)}" if event.data else ""
    return f"  {fmt_clock(event.created_at)}  #{event.seq:<3} {event.kind}{data}"


def checkpoint_summary(checkpoint: Any) -> dict[str, Any]:
    """The fields of a checkpoint row that lists and job pages show."""
    return {
        "id": checkpoint.pk,
        "key": checkpoint.key,
        "kind": checkpoint.kind,
        "status": checkpoint.status,
        "title": checkpoint.title,
        "job_id": str(checkpoint.job_id),
        "opened_at": checkpoint.opened_at,
        "decided_at": checkpoint.decided_at,
        "expires_at": checkpoint.expires_at,
    }


def job_checkpoints(job: Job, *, pending_only: bool = False) -> list[Any]:
    """The job's checkpoints, if the checkpoints app is installed."""
    manager = getattr(job, "checkpoints", None)
    if manager is None:
        return []
    qs = manager.all().order_by("opened_at", "pk")
    return list(qs.filter(status="pending") if pending_only else qs)


def decide_commands(checkpoint: Any) -> list[str]:
    """The exact commands a reviewer types to decide a pending checkpoint."""
    pk = checkpoint.pk
    if checkpoint.kind == "input":
        first = f"python manage.py checkpoints submit {pk} --data '{{...}}' --as USER"
    else:
        first = f"python manage.py checkpoints approve {pk} --as USER"
    return [first, f"python manage.py checkpoints reject {pk} --reason '...' --as USER"]


def who_may_decide(creator: str | None) -> str:
    who = "USER needs the checkpoints.decide_checkpoint permission"
    if creator:
        who += f" and, to approve, must not be {creator} (who started the job)"
    return f"({who})"


def decision_hints(checkpoints: Iterable[Any], creator: str | None) -> list[str]:
    """For each pending checkpoint: its title and how to review and decide it."""
    lines = []
    for cp in checkpoints:
        lines.append(f"  checkpoint {cp.pk}  [{cp.kind}]  {cp.title}")
        lines.append(f"    python manage.py checkpoints show {cp.pk}")
        lines += [f"    {command}" for command in decide_commands(cp)]
    if lines:
        lines.append(f"  {who_may_decide(creator)}")
    return lines
