"""Deciding checkpoints. The admin, the API and the command line all call these."""

import logging
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Field, prefetch_related_objects
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import Organization
from accounts.roles import Capability, can, membership_of
from checkpoints.models import (
    Checkpoint,
    CheckpointDecision,
    CheckpointKind,
    CheckpointStatus,
    Verdict,
)
from checkpoints.selectors import (
    DECISIONS_WITH_USERS,
    current_approvers,
    resolution,
    undecided,
)
from core import metrics, sentry
from core.errors import ApplicationError, Conflict
from core.rows import instance
from core.schemas import validation_errors
from jobs.models import Job
from jobs.runtime import resolve_wait

logger = logging.getLogger(__name__)

DECIDE_PERMISSION = "checkpoints.decide_checkpoint"


class CheckpointError(ApplicationError):
    """A decision that cannot be taken as asked."""


class CheckpointConflict(CheckpointError, Conflict):
    """The checkpoint was already decided (or this person already approved)."""

    def __init__(self, message: str, decision: CheckpointDecision | None = None) -> None:
        super().__init__(message)
        self.decision = decision

    def details(self) -> dict[str, Any]:
        """The earlier decision, so a client sees who decided and how."""
        if self.decision is None:
            return {}
        from checkpoints.serializers import DecisionSerializer  # the API's view of it

        return {"decision": DecisionSerializer(self.decision).data}


class CheckpointValidationError(CheckpointError):
    """Bad reason, payload or input; `fields` maps a field path to its messages."""


Actor = User | AnonymousUser


def schema_errors(schema: dict[str, Any], data: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for where, message in validation_errors(schema, data):
        errors.setdefault(where or "non_field_errors", []).append(message)
    return errors


def _lock(checkpoint: Checkpoint) -> Checkpoint:
    """Lock and read the checkpoint named by `checkpoint`'s id and organization (an
    unread `checkpoint_of` is enough): another organization's is neither found nor
    locked.

    The job, then the checkpoint, in one statement: the filter locks the job's
    row before the checkpoint's is (the order `job_cancel` takes them), so a decision
    racing a cancel waits instead of deadlocking. Its decisions come along (none to read
    while `undecided`): nobody adds one while it is locked, and with the one being made
    (`_decision`) they are what the caller shows without reading them again. The job's
    and organization's columns are as the statement began, before any wait for the lock:
    a setting changed meanwhile (self-approval) applies from the next decision."""
    sql, (checkpoint_fields, job_fields, organization_fields) = _lock_statement(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [checkpoint.pk, checkpoint.organization_id])
        row = cursor.fetchone()
    if row is None:
        raise Checkpoint.DoesNotExist(f"checkpoint {checkpoint.pk} does not exist")
    values = iter(row)
    locked = instance(Checkpoint, checkpoint_fields, values)
    locked.job = instance(Job, job_fields, values)
    locked.job.organization = instance(Organization, organization_fields, values)
    if undecided(locked.status, locked.required_approvals):  # no query needed
        decisions = locked.decisions.all()  # as a prefetch leaves it:
        decisions._result_cache, decisions._prefetch_done = [], True  # type: ignore[attr-defined]
        locked._prefetched_objects_cache = {"decisions": decisions}  # type: ignore[attr-defined]
    else:
        prefetch_related_objects([locked], DECISIONS_WITH_USERS)
    return locked


@cache
def _lock_statement(vendor: str) -> tuple[str, list[list["Field[Any, Any]"]]]:
    """`_lock`'s SELECT, built once per database vendor (the ORM takes longer to build it
    than the database to run it), and the fields its columns are, in order: the
    checkpoint's, of its job's what the rules and the answer use (not its input, result
    or error), and the job's organization's. Each in concrete-field order, as
    `Model.from_db` takes them."""
    quote = connection.ops.quote_name
    read = [
        (Checkpoint, "c", None),
        (Job, "j", {"id", "job_type", "organization_id", "created_by_id"}),
        (Organization, "o", None),
    ]
    fields = [
        [f for f in model._meta.concrete_fields if only is None or f.attname in only]
        for model, _, only in read
    ]
    selected = ", ".join(
        f"{alias}.{quote(str(f.column))}"
        for (_, alias, _), of_model in zip(read, fields, strict=True)
        for f in of_model
    )
    features = connection.features
    # NO KEY: a writer of the job's events checks its foreign key (KEY SHARE) at commit;
    # FOR UPDATE would make it wait for us while we wait on its event number, a deadlock.
    lock = (
        " FOR NO KEY UPDATE"
        if features.has_select_for_no_key_update
        else " FOR UPDATE"
        if features.has_select_for_update
        else ""
    )
    lock_self = " FOR UPDATE OF c" if features.has_select_for_update_of else lock
    checkpoint, job, organization = (quote(model._meta.db_table) for model, _, _ in read)
    sql = (
        f"SELECT {selected} FROM {checkpoint} c"
        f" JOIN {job} j ON j.id = c.job_id JOIN {organization} o ON o.id = j.organization_id"
        f" WHERE c.id = %s AND c.organization_id = %s"
        f" AND EXISTS (SELECT 1 FROM {job} l WHERE l.id = c.job_id{lock})"
        f"{lock_self}"
    )
    return sql, fields


def _decision(checkpoint: Checkpoint, **fields: Any) -> CheckpointDecision:
    """A decision on a checkpoint `_lock` returned, not yet written (`resolve_wait`
    writes it, with what it changes), added to the decisions read with it, so that
    `checkpoint.decisions.all()` is the checkpoint's as it now stands."""
    decision = CheckpointDecision(
        checkpoint=checkpoint, created_at=_decision_time(checkpoint), **fields
    )
    checkpoint.decisions.all()._result_cache.append(decision)  # type: ignore[union-attr]
    return decision


def _decision_time(checkpoint: Checkpoint) -> datetime:
    """Now, but never before the checkpoint's opening (a worker on a host whose clock is
    ahead opened it): a decision belongs to the opening it decides (`opening_decisions`)."""
    return max(timezone.now(), checkpoint.opened_at)


def _ensure_pending(checkpoint: Checkpoint) -> None:
    if checkpoint.status != CheckpointStatus.PENDING:
        raise CheckpointConflict(
            f"checkpoint is already {checkpoint.status}",
            decision=checkpoint.decisions.order_by("-created_at", "-pk").first(),
        )
    if checkpoint.expires_at is not None and checkpoint.expires_at <= timezone.now():
        # Past its expiry but not yet swept: its on_timeout decides, not a late reviewer.
        raise CheckpointConflict("checkpoint has expired")


def _ensure_may_decide(checkpoint: Checkpoint, user: Actor | None, *, approving: bool) -> User:
    """Who may decide: the approvers and admins of the job's organization, and staff
    outside any organization who hold the decide permission."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        raise PermissionDenied("sign in to decide checkpoints")
    organization = checkpoint.job.organization
    member = membership_of(user)
    if member is not None and member.organization_id != organization.pk:
        raise PermissionDenied("this checkpoint belongs to another organization")
    if not can(user, Capability.DECIDE, organization.pk) and not user.has_perm(DECIDE_PERMISSION):
        raise PermissionDenied(
            f"{user.get_username()} may not decide checkpoints "
            f"(needs the approver role or the {DECIDE_PERMISSION} "
            f"permission)"
        )
    self_approval = settings.COUNTERSIGN_ALLOW_SELF_APPROVAL or organization.allow_self_approval
    if approving and checkpoint.job.created_by_id == user.pk and not self_approval:
        raise PermissionDenied(
            "the person who started a job may not approve its checkpoints "
            "(four-eyes rule; see COUNTERSIGN_ALLOW_SELF_APPROVAL)"
        )
    return user


def decide_refusal(checkpoint: Checkpoint, user: Actor | None, *, approving: bool) -> str:
    """Why `user` may not decide (approve, when `approving`) the checkpoint, or "": the
    same rules as the decisions, for pages that show or hide their buttons."""
    try:
        _ensure_may_decide(checkpoint, user, approving=approving)
    except PermissionDenied as refused:
        return str(refused)
    return ""


def _settle(checkpoint: Checkpoint, status: str, decision: CheckpointDecision) -> None:
    """Write the decision and the checkpoint's new status, tell the job's followers,
    record the job's wait as resolved (its run goes on from it without reading the
    checkpoint) and wake the job: together (one statement on PostgreSQL). `decision` is
    the last of the checkpoint's decisions (`_decision`)."""
    checkpoint.status = status
    checkpoint.decided_at = decision.created_at = _decision_time(checkpoint)
    user = decision.user.get_username() if decision.user else None
    resolve_wait(
        str(checkpoint.job_id),
        rows=[decision],
        updates=[
            (
                Checkpoint,
                {"pk": checkpoint.pk},
                {"status": status, "decided_at": checkpoint.decided_at},
            )
        ],
        events=[
            ("checkpoint.decided", {"checkpoint_id": checkpoint.pk, "status": status, "by": user})
        ],
        wake=f"checkpoint {checkpoint.key} {status}",
        resolved=(checkpoint.key, resolution(checkpoint)),
        now=checkpoint.decided_at,
    )
    metrics.inc("agent_checkpoints_total", kind=checkpoint.kind, status=status)
    metrics.observe(
        "agent_checkpoint_decision_seconds",
        (checkpoint.decided_at - checkpoint.opened_at).total_seconds(),
        kind=checkpoint.kind,
    )
    _breadcrumb(checkpoint, decision)
    logger.info(
        "checkpoint %s %s",
        checkpoint.pk,
        status,
        extra={"checkpoint_id": checkpoint.pk, "job_id": str(checkpoint.job_id)},
    )


def _breadcrumb(checkpoint: Checkpoint, decision: CheckpointDecision) -> None:
    """A decision (approve, reject, input, expiry) for Sentry, without payload or reason."""
    sentry.breadcrumb(
        category="checkpoint",
        message=f"checkpoint {checkpoint.pk} {decision.verdict}",
        data={
            "checkpoint_id": checkpoint.pk,
            "job_id": str(checkpoint.job_id),
            "kind": checkpoint.kind,
            "decision": decision.verdict,
            "status": checkpoint.status,
            "user_id": decision.user_id,
        },
    )


@metrics.batched()  # one Redis round trip for the decision's counters
@transaction.atomic
def checkpoint_approve(
    *,
    checkpoint: Checkpoint,
    user: Actor | None,
    reason: str | None = None,
    payload: dict[str, Any] | None = None,
) -> CheckpointDecision:
    """Approve, optionally with an edited payload. With `required_approvals` > 1
    the checkpoint settles when that many different people have approved."""
    checkpoint = _lock(checkpoint)
    decider = _ensure_may_decide(checkpoint, user, approving=True)  # 403 before 409: a
    _ensure_pending(checkpoint)  # conflict would show the decision to someone not allowed
    if checkpoint.kind != CheckpointKind.APPROVAL:
        raise CheckpointValidationError(
            f"an {checkpoint.kind} checkpoint is answered, not approved: submit its input"
        )
    if payload is not None:
        if not isinstance(payload, dict):
            raise CheckpointValidationError(
                "the edited payload must be a JSON object", {"payload": ["Expected a JSON object."]}
            )
        errors = (
            schema_errors(checkpoint.payload_schema, payload) if checkpoint.payload_schema else {}
        )
        if not errors and checkpoint.payload_validator:
            errors = import_string(checkpoint.payload_validator)(checkpoint, payload)
        if errors:
            raise CheckpointValidationError("the edited payload is not valid", errors)
    approvers = current_approvers(checkpoint)
    if decider.pk in approvers:
        raise CheckpointConflict(f"{decider.get_username()} has already approved this checkpoint")
    decision = _decision(
        checkpoint,
        user=decider,
        verdict=Verdict.APPROVED,
        reason=reason or "",
        payload=payload,
    )
    # The checkpoint is locked, so nobody else approved meanwhile; an edit restarts the count.
    approvals = 1 if payload is not None else len(approvers) + 1
    if approvals >= checkpoint.required_approvals:
        _settle(checkpoint, CheckpointStatus.APPROVED, decision)
    else:
        resolve_wait(
            str(checkpoint.job_id),
            rows=[decision],
            events=[
                (
                    "checkpoint.approval_recorded",
                    {
                        "checkpoint_id": checkpoint.pk,
                        "by": decider.get_username(),
                        "approvals": approvals,
                        "required": checkpoint.required_approvals,
                    },
                )
            ],
        )
        _breadcrumb(checkpoint, decision)  # short of the quorum: still pending
        logger.info(
            "checkpoint approval recorded (%s of %s)",
            approvals,
            checkpoint.required_approvals,
            extra={"checkpoint_id": checkpoint.pk, "job_id": str(checkpoint.job_id)},
        )
    return decision


@metrics.batched()  # one Redis round trip for the decision's counters
@transaction.atomic
def checkpoint_reject(
    *, checkpoint: Checkpoint, user: Actor | None, reason: str
) -> CheckpointDecision:
    """Reject; a reason is required so the audit trail says why."""
    checkpoint = _lock(checkpoint)
    decider = _ensure_may_decide(checkpoint, user, approving=False)
    _ensure_pending(checkpoint)
    if not reason or not reason.strip():
        raise CheckpointValidationError(
            "a rejection needs a reason", {"reason": ["This field is required."]}
        )
    decision = _decision(checkpoint, user=decider, verdict=Verdict.REJECTED, reason=reason.strip())
    _settle(checkpoint, CheckpointStatus.REJECTED, decision)
    return decision


@metrics.batched()  # one Redis round trip for the decision's counters
@transaction.atomic
def checkpoint_submit_input(
    *, checkpoint: Checkpoint, user: Actor | None, data: Any, reason: str | None = None
) -> CheckpointDecision:
    """Answer an input checkpoint with data matching its JSON schema."""
    checkpoint = _lock(checkpoint)
    decider = _ensure_may_decide(checkpoint, user, approving=False)
    _ensure_pending(checkpoint)
    if checkpoint.kind != CheckpointKind.INPUT:
        raise CheckpointValidationError(f"an {checkpoint.kind} checkpoint takes no input")
    errors = schema_errors(checkpoint.input_schema or {}, data)
    if errors:
        raise CheckpointValidationError("the input does not match the checkpoint's schema", errors)
    decision = _decision(
        checkpoint,
        user=decider,
        verdict=Verdict.INPUT,
        reason=reason or "",
        payload=data,
    )
    _settle(checkpoint, CheckpointStatus.APPROVED, decision)
    return decision


def checkpoints_expire_due(*, limit: int = 500) -> int:
    """Settle pending checkpoints past their expiry, following each one's on_timeout.

    One short transaction per checkpoint, locking job then checkpoint like the
    other decisions; a row someone is deciding right now is left for the next sweep.
    """
    due = list(
        Checkpoint.objects.filter(status=CheckpointStatus.PENDING, expires_at__lte=timezone.now())
        .order_by("expires_at")
        .values_list("pk", "job_id")[:limit]
    )
    expired = 0
    for pk, job_id in due:
        with transaction.atomic():
            if (
                not Job.objects.select_for_update(skip_locked=True, no_key=True)
                .filter(pk=job_id)
                .exists()
            ):
                continue
            checkpoint = (
                Checkpoint.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, status=CheckpointStatus.PENDING)
                .first()
            )
            if checkpoint is None:
                continue
            prefetch_related_objects([checkpoint], DECISIONS_WITH_USERS)
            decision = _decision(
                checkpoint,
                user=None,
                verdict=Verdict.EXPIRED,
                reason=f"expired; on_timeout={checkpoint.on_timeout}",
            )
            _settle(checkpoint, CheckpointStatus.EXPIRED, decision)
            expired += 1
    return expired
