"""`manage.py checkpoints list|show|approve|reject|submit`: review from the shell."""

from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from checkpoints import services
from checkpoints.cli import checkpoint_summary, decide_commands, who_may_decide
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus
from core.cli import find_user, fmt_time, parse_json, shorten, table, to_json, username
from jobs.cli import get_job


def get_checkpoint(checkpoint_id: str) -> Checkpoint:
    try:
        pk = int(checkpoint_id)
    except ValueError:
        raise CommandError(f"no checkpoint with id {checkpoint_id!r} (ids are numbers)") from None
    checkpoint = Checkpoint.objects.select_related("job", "job__created_by").filter(pk=pk).first()
    if checkpoint is None:
        raise CommandError(f"no checkpoint with id {checkpoint_id!r}")
    return checkpoint


def decision_dict(decision: CheckpointDecision) -> dict[str, Any]:
    return {
        "id": decision.pk,
        "verdict": decision.verdict,
        "user": username(decision.user),
        "reason": decision.reason,
        "payload": decision.payload,
        "created_at": decision.created_at,
    }


def checkpoint_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    job = checkpoint.job
    return {
        **checkpoint_summary(checkpoint),
        "job_type": job.job_type,
        "job_status": job.status,
        "job_created_by": username(job.created_by),
        "description": checkpoint.description,
        "payload": checkpoint.payload,
        "payload_schema": checkpoint.payload_schema,
        "input_schema": checkpoint.input_schema,
        "required_approvals": checkpoint.required_approvals,
        "on_timeout": checkpoint.on_timeout,
        "decisions": [decision_dict(d) for d in checkpoint.decisions.select_related("user")],
    }


def conflict_message(exc: services.CheckpointConflict, checkpoint: Checkpoint) -> str:
    """Say what happened before: who decided, when."""
    checkpoint.refresh_from_db(fields=["status", "decided_at"])
    decision = exc.decision
    if checkpoint.status == CheckpointStatus.CANCELLED:
        return f"{exc} (its job ended before a decision)"
    if decision is None or checkpoint.status == CheckpointStatus.PENDING:
        return str(exc)
    who = username(decision.user) or "the expiry timer"
    reason = f": {decision.reason}" if decision.reason else ""
    return f"{exc} by {who} at {fmt_time(decision.created_at)}{reason}"


def validation_message(exc: services.CheckpointValidationError) -> str:
    lines = [str(exc)]
    for field, messages in exc.fields.items():
        lines += [f"  {field}: {message}" for message in messages]
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "List and inspect checkpoints, and approve, reject or answer them. The acting "
        "user comes from --as USER or $COUNTERSIGN_USER."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        listing = actions.add_parser("list", help="checkpoints, pending first, oldest first")
        listing.add_argument("--pending", action="store_true", help="only pending ones")
        listing.add_argument("--job", dest="job_id", help="only this job's checkpoints")
        listing.add_argument("--limit", type=int, default=50)
        listing.add_argument("--json", action="store_true")

        show = actions.add_parser("show", help="one checkpoint: payload, diffs, decisions")
        show.add_argument("checkpoint_id")
        show.add_argument("--json", action="store_true")

        approve = self.decision_parser(actions, "approve", "approve (optionally with edits)")
        approve.add_argument("--reason", default="")
        approve.add_argument("--payload", help="an edited payload: JSON object or @file.json")

        reject = self.decision_parser(actions, "reject", "reject; the job ends rejected")
        reject.add_argument("--reason", required=True, help="why (kept in the audit trail)")

        submit = self.decision_parser(actions, "submit", "answer an input checkpoint")
        submit.add_argument("--data", required=True, help="the answer: JSON or @file.json")
        submit.add_argument("--reason", default="")

    @staticmethod
    def decision_parser(actions: Any, name: str, text: str) -> ArgumentParser:
        sub: ArgumentParser = actions.add_parser(name, help=text)
        sub.add_argument("checkpoint_id")
        sub.add_argument(
            "--as", dest="as_user", metavar="USER", help="who decides (default: $COUNTERSIGN_USER)"
        )
        sub.add_argument("--json", action="store_true")
        return sub

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    # --- list / show ------------------------------------------------------------------
    def do_list(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        qs = Checkpoint.objects.select_related("job")
        if options["pending"]:
            qs = qs.filter(status=CheckpointStatus.PENDING)
        if options["job_id"]:
            qs = qs.filter(job=get_job(options["job_id"]))
        checkpoints = list(qs.pending_first()[: options["limit"]])
        if options["json"]:
            self.stdout.write(
                to_json(
                    [{**checkpoint_summary(c), "job_type": c.job.job_type} for c in checkpoints]
                )
            )
            return
        if not checkpoints:
            self.stdout.write("no pending checkpoints" if options["pending"] else "no checkpoints")
            return
        self.stdout.write(
            table(
                ["ID", "STATUS", "KIND", "TITLE", "JOB TYPE", "JOB", "OPENED"],
                [
                    [
                        c.pk,
                        c.status,
                        c.kind,
                        shorten(c.title, 40),
                        c.job.job_type,
                        c.job_id,
                        fmt_time(c.opened_at),
                    ]
                    for c in checkpoints
                ],
            )
        )

    def do_show(self, options: dict[str, Any]) -> None:
        checkpoint = get_checkpoint(options["checkpoint_id"])
        if options["json"]:
            self.stdout.write(to_json(checkpoint_dict(checkpoint)))
            return
        job = checkpoint.job
        self.stdout.write(self.style.MIGRATE_HEADING(checkpoint.title))
        self.stdout.write(f"Checkpoint: {checkpoint.pk} ({checkpoint.key}, {checkpoint.kind})")
        self.stdout.write(f"Status:     {checkpoint.status}")
        self.stdout.write(
            f"Job:        {job.pk} ({job.job_type}, {job.status}; "
            f"started by {username(job.created_by) or 'nobody'})"
        )
        self.stdout.write(f"Opened:     {fmt_time(checkpoint.opened_at)}")
        if checkpoint.expires_at:
            self.stdout.write(
                f"Expires:    {fmt_time(checkpoint.expires_at)} (then {checkpoint.on_timeout})"
            )
        if checkpoint.required_approvals > 1:
            self.stdout.write(f"Approvals:  {checkpoint.required_approvals} needed")
        if checkpoint.description:
            self.stdout.write(f"\n{checkpoint.description}")
        self.write_payload(checkpoint.payload)
        if checkpoint.input_schema:
            self.stdout.write(f"\nInput schema:\n{to_json(checkpoint.input_schema)}")
        self.write_decisions(checkpoint)

    def write_payload(self, payload: Any) -> None:
        files = payload.get("files") if isinstance(payload, dict) else None
        if not (
            isinstance(files, list) and all(isinstance(f, dict) and "path" in f for f in files)
        ):
            self.stdout.write(f"\nPayload:\n{to_json(payload)}")
            return
        rest = {k: v for k, v in payload.items() if k != "files"}
        if rest:
            self.stdout.write(f"\nPayload:\n{to_json(rest)}")
        self.stdout.write(f"\nFiles ({len(files)}):")
        for entry in files:
            action = f" ({entry['action']})" if entry.get("action") else ""
            self.stdout.write(self.style.HTTP_INFO(f"\n== {entry['path']}{action}"))
            body = entry.get("diff") or entry.get("content") or ""
            self.stdout.write(body.rstrip("\n") if body else "(empty)")

    def write_decisions(self, checkpoint: Checkpoint) -> None:
        decisions = list(checkpoint.decisions.select_related("user"))
        self.stdout.write("\nDecisions:")
        if not decisions:
            self.stdout.write("  (none yet)")
        for d in decisions:
            edited = " (with an edited payload)" if d.payload is not None else ""
            reason = f": {d.reason}" if d.reason else ""
            self.stdout.write(
                f"  {fmt_time(d.created_at)}  {d.verdict} by "
                f"{username(d.user) or 'the expiry timer'}{edited}{reason}"
            )
        if checkpoint.is_pending:
            self.stdout.write("\nDecide:")
            for command in decide_commands(checkpoint):
                self.stdout.write(f"  {command}")
            self.stdout.write(f"  {who_may_decide(username(checkpoint.job.created_by))}")

    # --- decisions --------------------------------------------------------------------
    def do_approve(self, options: dict[str, Any]) -> None:
        payload = None
        if options["payload"] is not None:
            payload = parse_json(options["payload"], "--payload")
            if not isinstance(payload, dict):
                raise CommandError("--payload must be a JSON object")
        self.decide(
            options,
            "approve",
            lambda cp, user: services.checkpoint_approve(
                checkpoint=cp, user=user, reason=options["reason"], payload=payload
            ),
        )

    def do_reject(self, options: dict[str, Any]) -> None:
        self.decide(
            options,
            "reject",
            lambda cp, user: services.checkpoint_reject(
                checkpoint=cp, user=user, reason=options["reason"]
            ),
        )

    def do_submit(self, options: dict[str, Any]) -> None:
        data = parse_json(options["data"], "--data")
        self.decide(
            options,
            "answer",
            lambda cp, user: services.checkpoint_submit_input(
                checkpoint=cp, user=user, data=data, reason=options["reason"]
            ),
        )

    def decide(
        self,
        options: dict[str, Any],
        verb: str,
        call: Callable[[Checkpoint, Any], CheckpointDecision],
    ) -> None:
        checkpoint = get_checkpoint(options["checkpoint_id"])
        user = find_user(options["as_user"], required=True, action=f"{verb} a checkpoint")
        try:
            decision = call(checkpoint, user)
        except PermissionDenied as exc:
            raise CommandError(f"permission denied: {exc}") from None
        except services.CheckpointConflict as exc:
            raise CommandError(conflict_message(exc, checkpoint)) from None
        except services.CheckpointValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        checkpoint.refresh_from_db(fields=["status", "decided_at"])
        if options["json"]:
            self.stdout.write(
                to_json(
                    {
                        "checkpoint": checkpoint_summary(checkpoint),
                        "decision": decision_dict(decision),
                    }
                )
            )
            return
        verbs = {"approved": "approved", "rejected": "rejected", "input": "answered"}
        self.stdout.write(
            self.style.SUCCESS(
                f"checkpoint {checkpoint.pk} {verbs.get(decision.verdict, decision.verdict)} "
                f"by {username(user)}"
            )
        )
        if checkpoint.is_pending:
            approvals = len(services.current_approvers(checkpoint))
            self.stdout.write(
                f"  {approvals} of {checkpoint.required_approvals} approvals so "
                "far; it stays pending until the rest approve"
            )
        else:
            self.stdout.write(
                f"  job {checkpoint.job_id} resumes; follow it with: "
                f"python manage.py jobs show {checkpoint.job_id}"
            )
