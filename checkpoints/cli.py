"""Checkpoints on the command line: what lists and pages show, how to decide."""

from typing import Any

from checkpoints.models import Checkpoint, CheckpointStatus
from core.cli import username
from jobs.cli import JobAttachment, register_job_attachment
from jobs.models import Job


def checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
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


def decide_commands(checkpoint: Checkpoint) -> list[str]:
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


def decision_hints(job: Job, pending: list[dict[str, Any]]) -> list[str]:
    """For each pending checkpoint: its title and how to review and decide it."""
    lines = []
    for cp in Checkpoint.objects.filter(pk__in=[row["id"] for row in pending]).order_by("pk"):
        lines.append(f"  checkpoint {cp.pk}  [{cp.kind}]  {cp.title}")
        lines.append(f"    python manage.py checkpoints show {cp.pk}")
        lines += [f"    {command}" for command in decide_commands(cp)]
    if lines:
        lines.append(f"  {who_may_decide(username(job.created_by))}")
    return lines


def _rows(job: Job, **filters: Any) -> list[dict[str, Any]]:
    return [
        checkpoint_summary(c)
        for c in Checkpoint.objects.filter(job=job, **filters).order_by("opened_at", "pk")
    ]


# `jobs show` lists a job's checkpoints; `enqueue --wait` says how to decide the pending ones.
register_job_attachment(
    JobAttachment(
        name="checkpoints",
        columns=("id", "key", "kind", "status", "title"),
        rows=_rows,
        pending=lambda job: _rows(job, status=CheckpointStatus.PENDING),
        hints=decision_hints,
    )
)
