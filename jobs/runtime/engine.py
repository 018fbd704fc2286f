"""Running one job: claim the lease, replay the handler, record the outcome.

    run_job(job_id)
      claim the lease (or SKIPPED) ──► checks before the handler: unknown type, no
      attempts left, cancel asked ──► admission to the concurrency key (or PARKED)
      ──► replay the handler under a heartbeat ──► its outcome written under the lease
      ──► release the concurrency slot

Every write of an outcome is conditional on this run still holding the lease, so a
run that lost it (LEASE_LOST) cannot write over the run that took over.
"""

import logging
import time
import traceback
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from core import logs, metrics, sentry
from jobs.models import Job, JobEvent, JobStatus, JobStep
from jobs.runtime import concurrency, folded, leases, renewal
from jobs.runtime.context import JobContext, to_json
from jobs.runtime.ending import job_ended
from jobs.runtime.errors import (
    JobCancelled,
    JobRejected,
    LeaseLost,
    NonRetryableError,
    RetryStep,
    RunInterrupted,
    Suspend,
    UnknownJobType,
    WorkerLost,
)
from jobs.runtime.events import publish, save_events
from jobs.runtime.outcomes import RunOutcome
from jobs.runtime.queue import enqueue_on_commit, prompt_on_commit
from jobs.runtime.registry import HandlerFn, get_handler
from jobs.runtime.retry import RetryPolicy

logger = logging.getLogger(__name__)

RUN_OP = "job.run"  # a run's span in Sentry


def default_policy() -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.COUNTERSIGN_DEFAULT_MAX_ATTEMPTS,
        backoff=settings.COUNTERSIGN_RETRY_BACKOFF_SECONDS,
        backoff_max=settings.COUNTERSIGN_RETRY_BACKOFF_MAX_SECONDS,
    )


def job_tags(job: Job) -> dict[str, str]:
    """What a run's Sentry events and transaction are tagged with."""
    return {
        "job_id": str(job.pk),
        "job_type": job.job_type,
        "concurrency": job.concurrency_key or "none",
        "organization": str(job.organization_id),
        "attempt": str(job.attempts),
    }


def report_failure(job: Job, exc: BaseException) -> None:
    """A job that ended FAILED (not an attempt that will be retried), to Sentry."""
    sentry.report_failure(
        exc,
        tags=job_tags(job),
        context=(
            "job",
            {
                "id": str(job.pk),
                "type": job.job_type,
                "attempt": job.attempts,
                "max_attempts": job.max_attempts,
            },
        ),
    )


class Run:
    """One execution of a job under a lease."""

    def __init__(self, claimed: leases.Claim, owner: str) -> None:
        job = claimed.job
        self.job = job
        self.owner = owner
        self.lease_lost = False
        # A cancel asked of a run whose worker died is honoured by the run that takes over.
        self.cancel_requested = job.cancel_requested
        self.lease_expires_at: datetime = job.lease_expires_at or leases.lease_expiry()
        # Events are numbered here (the claim read the last number) and written in
        # batches: at suspend, retry and the end, and at the first step boundary a
        # second or more after the oldest unwritten one.
        self._seq = claimed.last_event_seq + 1
        self.claim = claimed
        self._events: list[JobEvent] = []
        self._oldest_event = 0.0
        self._unsaved_step: JobStep | None = None

    # --- heartbeat -------------------------------------------------------------
    def heartbeat(self) -> AbstractContextManager[None]:
        """Renew the lease (and hear of a cancel) while the handler runs; stopped as
        soon as it returns or raises, before any outcome is written."""
        return renewal.renewing(self)

    def renew_lease(self) -> bool:
        """One renewal, on the process's renewal thread (`renewal.Renewable`)."""
        try:
            expires = leases.lease_expiry()  # taken before the write: never optimistic
            ours, cancel = leases.renew(str(self.job.pk), self.owner, expires)
        except Exception:  # a transient database error: try again next beat
            logger.exception("lease heartbeat failed", extra={"job_id": str(self.job.pk)})
            connection.close()  # the renewal thread's own
            return True
        if not ours:
            self.lease_lost = True
            return False
        self.lease_expires_at = expires
        self.cancel_requested = self.cancel_requested or cancel
        return True

    # --- called by JobContext ----------------------------------------------------
    def check_lease(self) -> None:
        """Before writing: a run whose lease ran out must not write over the new owner."""
        if self.lease_lost or timezone.now() >= self.lease_expires_at:
            raise LeaseLost()

    def check_boundary(self) -> None:
        """Between steps: stop if the lease is gone or cancellation was asked for."""
        self.check_lease()
        if self.cancel_requested:
            raise JobCancelled()

    def mark_waiting(self, reason: str, wake_at: datetime | None) -> None:
        updated = Job.objects.filter(
            pk=self.job.pk, lease_owner=self.owner, cancel_requested=False
        ).update(
            status=JobStatus.WAITING,
            wait_reason=reason,
            wake_at=wake_at,
            lease_owner="",
            lease_expires_at=None,
        )
        if not updated:
            if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                raise JobCancelled()
            raise LeaseLost()
        self.job.status, self.job.wait_reason, self.job.wake_at = (
            JobStatus.WAITING,
            reason,
            wake_at,
        )
        metrics.inc("agent_jobs_total", job_type=self.job.job_type, status=JobStatus.WAITING)
        # In the same transaction, so the timeline never shows a decision before the wait.
        self.emit(
            "job.waiting", {"reason": reason, "wake_at": wake_at.isoformat() if wake_at else None}
        )
        self.flush_events()
        if wake_at is not None:
            delay = (wake_at - timezone.now()).total_seconds()
            prompt_on_commit(str(self.job.pk), self.job.priority, delay)

    def hold_step(self, step: JobStep) -> None:
        """A finished step's record, written with this run's next write: the next
        durable operation's, or the outcome's (in the same statement on PostgreSQL).
        Only the handler's own code runs in between, which a replay runs again anyway."""
        self._unsaved_step = step

    def flush_step(self) -> None:
        """Write the held step, if the lease is still ours (LeaseLost if not)."""
        step, self._unsaved_step = self._unsaved_step, None
        if step is None:
            return
        self.check_lease()
        try:
            step.save(force_insert=True)
        except IntegrityError as exc:  # another run recorded it: that run owns the job
            raise LeaseLost() from exc

    def _event(self, kind: str, data: dict[str, Any]) -> JobEvent:
        """The run's next event, numbered."""
        event = JobEvent(
            job_id=self.job.pk, seq=self._seq, kind=kind, data=data, created_at=timezone.now()
        )
        self._seq += 1
        return event

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Publish live now; write to the database at the next flush."""
        event = self._event(kind, data)
        publish(event)
        if not self._events:
            self._oldest_event = time.monotonic()
        self._events.append(event)

    def event_mark(self) -> int:
        return len(self._events)

    def drop_events_since(self, mark: int) -> None:
        if len(self._events) > mark:
            self._seq = self._events[mark].seq
            del self._events[mark:]

    def flush_events(self, older_than: float | None = None) -> None:
        if not self._events:
            return
        if older_than is not None and time.monotonic() - self._oldest_event < older_than:
            return
        self.flush_step()  # never an event of a step whose record is not written
        events, self._events = self._events, []
        save_events(events)
        self._seq = events[-1].seq + 1  # renumbered if another writer took our numbers

    # --- outcomes ---------------------------------------------------------------
    def end(
        self, status: JobStatus, error: BaseException | None = None, result: Any = None
    ) -> RunOutcome:
        """Write the job's final status (if the lease is still ours), its closing event,
        and what every end of a job records."""
        fields = (
            _error_fields(error)
            if error is not None
            else {"result": result, "error_type": "", "error_message": "", "error_traceback": ""}
        )
        finished_at = timezone.now()
        update = dict(
            status=status,
            finished_at=finished_at,
            lease_owner="",
            lease_expires_at=None,
            wait_reason="",
            wake_at=None,
            **fields,
        )
        data: dict[str, str] = {"status": status}
        if error is not None:
            data["error"] = f"{type(error).__name__}: {error}"[:500]
        closing = self._event(f"job.{status}", data)
        if not self._write_end(update, closing):
            logger.warning(
                "lease lost before the outcome was written; another run owns it",
                extra={"job_id": str(self.job.pk)},
            )
            return RunOutcome.LEASE_LOST
        publish(closing)
        logger.info("job %s", status)
        job_ended(self.job, status, finished_at)
        return RunOutcome(status)

    def _write_end(self, update: dict[str, Any], closing: JobEvent) -> bool:
        """The final row, the held step and the events, if the lease is still ours."""
        if folded.supported():
            try:
                ended = folded.end_run(
                    job_id=self.job.pk,
                    owner=self.owner,
                    update=update,
                    step=self._unsaved_step,
                    events=[*self._events, closing],
                )
            except IntegrityError:  # an event number taken meanwhile: nothing was written
                pass
            else:
                self._events, self._unsaved_step = [], None
                return ended
        with transaction.atomic():  # the status first: only under the lease is anything written
            if not Job.objects.filter(pk=self.job.pk, lease_owner=self.owner).update(**update):
                self._unsaved_step = None
                return False
            step, self._unsaved_step = self._unsaved_step, None
            if step is not None:
                step.save(force_insert=True)
            self._events.append(closing)
            self.flush_events()  # renumbers them if another writer took their numbers
        return True

    def retry_later(
        self,
        delay: float,
        error: BaseException,
        *,
        count_attempt: bool,
        event: str,
        data: dict[str, Any],
    ) -> RunOutcome:
        """`retrying` until `delay` has passed; a cancel asked meanwhile wins."""
        fields: dict[str, Any] = dict(
            status=JobStatus.RETRYING,
            wake_at=timezone.now() + timedelta(seconds=delay),
            lease_owner="",
            lease_expires_at=None,
            **_error_fields(error),
        )
        if count_attempt:
            fields["attempts"] = self.job.attempts + 1
        try:
            self.flush_step()
        except LeaseLost:
            return RunOutcome.LEASE_LOST
        with transaction.atomic():
            updated = Job.objects.filter(
                pk=self.job.pk, lease_owner=self.owner, cancel_requested=False
            ).update(**fields)
            if updated:
                enqueue_on_commit(str(self.job.pk), self.job.priority, countdown=delay)
                metrics.inc(
                    "agent_jobs_total", job_type=self.job.job_type, status=JobStatus.RETRYING
                )
        if updated:
            self.emit(event, {**data, "delay": round(delay, 3)})
            self.flush_events()
            return RunOutcome.RETRYING
        if Job.objects.filter(
            pk=self.job.pk, lease_owner=self.owner, cancel_requested=True
        ).exists():
            return self.end(JobStatus.CANCELLED)
        return RunOutcome.LEASE_LOST


def _error_fields(error: BaseException) -> dict[str, str]:
    return {
        "error_type": type(error).__name__,
        "error_message": str(error)[:5000],
        "error_traceback": "".join(traceback.format_exception(error))[-20000:],
    }


# What a lost database connection raises: psycopg's errors for a closed connection,
# a server shutting down or a terminated backend.
DATABASE_GONE = (OperationalError, InterfaceError)


def run_job(job_id: str, *, interrupted: str = "") -> RunOutcome:
    """Run the job if it is ours to run, and say how the run ended.

    Raises RunInterrupted if the database went away; `interrupted` is then the lease
    the interrupted run left behind, dropped here before the job is claimed again."""
    # Every line of the run names the job; nothing bound by an earlier run (or by a
    # request running it in-process) shows through, and all of it is reset after.
    with (
        logs.bind(job_id=job_id, job_type=None, request_id=None, step_key=None, checkpoint_id=None),
        metrics.batched(),
    ):
        owner = leases.new_owner()
        try:
            if interrupted:
                leases.drop(job_id, interrupted)
        except DATABASE_GONE as exc:
            raise _interrupted(interrupted, exc) from exc
        try:
            claimed = leases.claim(job_id, owner)
        except DATABASE_GONE as exc:  # the claim may have committed before the reply was lost
            raise _interrupted(owner, exc) from exc
        if claimed is None:
            logger.debug("job not runnable or leased elsewhere; message dropped")
            return RunOutcome.SKIPPED
        job = claimed.job
        logs.update(job_type=job.job_type, request_id=job.request_id)
        metrics.inc("agent_jobs_total", job_type=job.job_type, status=JobStatus.RUNNING)
        outcome: RunOutcome | None = RunOutcome.FAILED  # if something below escapes
        try:
            outcome = _run(Run(claimed, owner))
            return outcome
        except DATABASE_GONE as exc:
            gone = _interrupted(owner, exc)
            outcome = None  # nothing can be released now: the next try goes on with the slot
            raise gone from exc
        finally:
            if outcome is not None and (outcome.held_slot or _orphaned(job, outcome)):
                try:
                    concurrency.release(job, outcome)
                except Exception:  # never mask how the run ended; the key's next run fixes it
                    logger.exception("could not release the job's concurrency slot")


def _interrupted(owner: str, error: Exception) -> Exception:
    """RunInterrupted if the connection is gone (a restart, a killed backend, a server
    down); an error on a live connection (a deadlock, a timeout) is the run's own."""
    if connection.connection is not None and connection.is_usable():
        return error
    connection.close()
    return RunInterrupted(owner)


def _orphaned(job: Job, outcome: RunOutcome) -> bool:
    """A run that lost its lease releases nothing: the run that took over will. Unless
    that one is over too and wrote no release (it parked the job, say): then nobody
    would, so this run does."""
    return (
        outcome == RunOutcome.LEASE_LOST
        and bool(job.concurrency_key)
        and not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists()
    )


def _run(run: Run) -> RunOutcome:
    job = run.job
    try:
        spec = get_handler(job.job_type)
    except UnknownJobType as exc:
        report_failure(job, exc)
        return run.end(JobStatus.FAILED, exc)
    if job.attempts > job.max_attempts:
        lost = WorkerLost(
            f"the worker running this job died (SIGKILL, OOM or hard time "
            f"limit) and no attempts are left (max_attempts={job.max_attempts})"
        )
        report_failure(job, lost)
        return run.end(JobStatus.FAILED, lost)
    if job.cancel_requested:
        return run.end(JobStatus.CANCELLED)
    try:
        if not concurrency.admit(run):
            logger.info("job parked: its concurrency key is at its limit")
            return RunOutcome.PARKED
    except JobCancelled:
        return run.end(JobStatus.CANCELLED)
    except LeaseLost:
        return RunOutcome.LEASE_LOST

    # Read with the claim on PostgreSQL; elsewhere one query, none on a first run.
    steps = {s.key: s for s in run.claim.recorded_steps()}
    run.emit("job.resumed" if steps else "job.started", {"attempt": job.attempts})
    ctx = JobContext(job, steps, run)
    with sentry.traced(op=RUN_OP, name=job.job_type, tags=job_tags(job)):
        return _replay(run, spec.fn, ctx, spec.retry or default_policy())


def _replay(run: Run, fn: HandlerFn, ctx: JobContext, policy: RetryPolicy) -> RunOutcome:
    """Call the handler and turn how it ended into the job's next state."""
    job = run.job
    try:
        with run.heartbeat():
            result = to_json(fn(ctx))
    except Suspend as suspend:
        logger.info("job waiting for %s", suspend.reason)
        return RunOutcome.WAITING
    except RetryStep as retry:
        return run.retry_later(
            retry.delay,
            retry.error,
            count_attempt=False,
            event="step.retrying",
            data={"step": retry.key, "error": str(retry.error)[:500]},
        )
    except LeaseLost:  # another run owns the job: write nothing more, events included
        logger.warning("lease lost; stopping this run")
        return RunOutcome.LEASE_LOST
    except JobCancelled:
        return run.end(JobStatus.CANCELLED)
    except JobRejected as exc:
        return run.end(JobStatus.REJECTED, exc)
    except Exception as exc:
        retryable = not isinstance(exc, NonRetryableError) and policy.is_retryable(exc)
        if retryable and job.attempts < job.max_attempts:
            delay = policy.delay(job.attempts)
            logger.warning(
                "job attempt %s failed; retrying in %.1fs", job.attempts, delay, exc_info=True
            )
            return run.retry_later(
                delay,
                exc,
                count_attempt=True,
                event="job.retrying",
                data={"attempt": job.attempts, "error": f"{type(exc).__name__}: {exc}"[:500]},
            )
        report_failure(job, exc)  # before the log line (dedupe)
        logger.exception("job failed")
        return run.end(JobStatus.FAILED, exc)
    return run.end(JobStatus.SUCCEEDED, result=result)
