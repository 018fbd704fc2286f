"""Reads of checkpoints that are more than a filter."""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery, prefetch_related_objects

from accounts.models import Organization
from accounts.roles import visible_to
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus, Verdict
from core.numbers import bigint
from jobs.models import Job

# A checkpoint's decisions with their users, in one query (not one for each).
DECISIONS_WITH_USERS = Prefetch("decisions", CheckpointDecision.objects.select_related("user"))
# A checkpoint's own columns: with `.only()`, of its job no more than named after them.
CHECKPOINT_FIELDS = [field.name for field in Checkpoint._meta.concrete_fields]


def checkpoints_of(organization: Organization | None) -> QuerySet[Checkpoint]:
    """What a member of `organization` may see, with what lists show (none without one)."""
    if organization is None:
        return Checkpoint.objects.none()
    # Of the job, only its type: the other 30 columns (its input and result among them)
    # cost more to read and build than the whole checkpoint.
    return (
        Checkpoint.objects.filter(organization=organization)
        .select_related("job")
        .only(*CHECKPOINT_FIELDS, "job__job_type")
        .prefetch_related(DECISIONS_WITH_USERS)
    )


def checkpoint_of(organization: Organization | None, raw_id: str) -> Checkpoint | None:
    """The checkpoint `raw_id` (a URL's) of `organization`, to decide, not read: the
    decision services lock and read it in one statement and find nothing if it is not
    that organization's. None if `raw_id` is no id or there is no organization."""
    pk = bigint(raw_id)
    if organization is None or pk is None:
        return None
    return Checkpoint(pk=pk, organization=organization)


# The columns of a list row (CheckpointSummarySerializer), read as values, not instances.
_ROW_COLUMNS = (
    "id",
    "job_id",
    "key",
    "kind",
    "title",
    "description",
    "status",
    "required_approvals",
    "expires_at",
    "on_timeout",
    "opened_at",
    "decided_at",
)


def checkpoint_rows(checkpoints: QuerySet[Checkpoint]) -> QuerySet[Any]:
    """The rows of the checkpoint list, as dicts: only the listed columns and the job's
    type (no payloads, no job row), without building model instances. Slice (paginate)
    it, then give the page to `list_rows`."""
    # A subquery, not a join: the page's count (which drops unused annotations) stays a
    # count of checkpoints alone, read from the index.
    job_type = Subquery(Job.objects.filter(pk=OuterRef("job_id")).values("job_type")[:1])
    return checkpoints.prefetch_related(None).values(*_ROW_COLUMNS, job_type=job_type)


def opening_decisions(checkpoint: Checkpoint) -> list[CheckpointDecision]:
    """The checkpoint's decisions since it was (last) opened, in order. A checkpoint is
    opened again when its job, cancelled while it waited, or its workflow's failed node,
    is retried: the decisions taken before stay, for the audit trail, but neither count
    towards its approvals nor reach the job. A decision is never dated before the opening
    it decides (`services._decision`), whatever the clocks of the hosts involved."""
    return [d for d in checkpoint.decisions.all() if d.created_at >= checkpoint.opened_at]


def undecided(status: str, required_approvals: int) -> bool:
    """Whether a checkpoint in this state certainly has no decision of its current
    opening (`opening_decisions`): it is pending, and its first decision of any kind
    (one approval is enough) would have settled it."""
    return status == CheckpointStatus.PENDING and required_approvals <= 1


def list_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of `checkpoint_rows` as CheckpointSummarySerializer has it, decisions (one
    query for the page) included. Datetimes and ids are left to the JSON renderer,
    which writes them as the serializer's fields do."""
    decisions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    # A page of the usual queue needs no query for its decisions.
    decided = [row["id"] for row in rows if not undecided(row["status"], row["required_approvals"])]
    if decided:
        for decision in (
            CheckpointDecision.objects.filter(checkpoint_id__in=decided)
            .order_by("created_at", "pk")
            .values_list("checkpoint_id", "id", "user__username", "verdict", "reason", "created_at")
        ):
            checkpoint_id, pk, username, verdict, reason, created_at = decision
            decisions[checkpoint_id].append(
                {
                    "id": pk,
                    "user": username,
                    "verdict": verdict,
                    "reason": reason,
                    "created_at": created_at,
                }
            )
    return [
        {
            "id": row["id"],
            "job": row["job_id"],
            "job_type": row["job_type"],
            "key": row["key"],
            "kind": row["kind"],
            "title": row["title"],
            "description": row["description"],
            "status": row["status"],
            "required_approvals": row["required_approvals"],
            "expires_at": row["expires_at"],
            "on_timeout": row["on_timeout"],
            "opened_at": row["opened_at"],
            "decided_at": row["decided_at"],
            "decisions": decisions.get(row["id"], []),
        }
        for row in rows
    ]


def job_checkpoints(job: Job) -> QuerySet[Checkpoint]:
    return job.checkpoints.prefetch_related(DECISIONS_WITH_USERS).order_by("opened_at", "pk")


def pending_count(user: AbstractBaseUser | AnonymousUser) -> int:
    """Checkpoints waiting for a decision that the admin shows `user`."""
    return visible_to(Checkpoint.objects.pending(), user).count()


def current_approvers(checkpoint: Checkpoint) -> set[int]:
    """Who has approved the payload as it stands: an edit restarts the count,
    so every approval counted is for the same content (the editor's included)."""
    # In memory: the decision services read the decisions with the locked checkpoint, in
    # the model's order (created_at, pk), and add the one being made at the end.
    approvals = [d for d in opening_decisions(checkpoint) if d.verdict == Verdict.APPROVED]
    last_edit = max((i for i, d in enumerate(approvals) if d.payload is not None), default=0)
    return {d.user_id for d in approvals[last_edit:] if d.user_id is not None}


def resolution(checkpoint: Checkpoint) -> dict[str, Any]:
    """The JSON the job memoizes once the checkpoint is settled: written with the
    decision that settles it (`services._settle`), or by the job's own poll.

    Its decisions with their users, read unless they were with the checkpoint (a
    decision service's lock reads them and adds the one being made)."""
    prefetch_related_objects([checkpoint], DECISIONS_WITH_USERS)
    decisions = opening_decisions(checkpoint)
    # An edit counts only if the checkpoint was approved: on expiry, a lone
    # approver's edit (short of required_approvals) must not reach the handler.
    edited = (
        next(
            (
                d.payload
                for d in reversed(decisions)
                if d.verdict == Verdict.APPROVED and d.payload is not None
            ),
            None,
        )
        if checkpoint.status == CheckpointStatus.APPROVED
        else None
    )
    supplied = next((d.payload for d in reversed(decisions) if d.verdict == Verdict.INPUT), None)
    last = decisions[-1] if decisions else None
    return {
        "checkpoint_id": checkpoint.pk,
        "key": checkpoint.key,
        "status": checkpoint.status,
        "on_timeout": checkpoint.on_timeout,
        "payload": edited if edited is not None else checkpoint.payload,
        "edited": edited is not None,
        "data": supplied,
        "reason": last.reason if last else "",
        "decided_by": [d.user.get_username() for d in decisions if d.user is not None],
    }
