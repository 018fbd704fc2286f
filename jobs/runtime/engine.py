"""Running one job: claim the lease, replay the handler, record the outcome."""

import logging
import threading
import time
import traceback
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import logs, metrics
from core.sentry import job_transaction, report_job_failure
from jobs.models import Job, JobEvent, JobStatus, JobStep
from jobs.runtime import admission, leases
from jobs.runtime.context import JobContext, to_json
from jobs.runtime.errors import (
    JobCancelled,
    JobRejected,
    LeaseLost,
    NonRetryableError,
    RetryStep,
    Suspend,
    UnknownJobType,
    WorkerLost,
)
from jobs.runtime.events import publish, save_events
from jobs.runtime.queue import enqueue_on_commit, prompt_on_commit
from jobs.runtime.registry import get_handler
from jobs.runtime.retry import RetryPolicy
from jobs.runtime.signals import job_finished

logger = logging.getLogger(__name__)


def default_policy() -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.COUNTERSIGN_DEFAULT_MAX_ATTEMPTS,
        backoff=settings.COUNTERSIGN_RETRY_BACKOFF_SECONDS,
        backoff_max=settings.COUNTERSIGN_RETRY_BACKOFF_MAX_SECONDS,
    )


class Run:
    """One execution of a job under a lease."""

    def __init__(self, job: Job, owner: str) -> None:
        self.job = job
        self.owner = owner
        self.lease_lost = False
        # A cancel asked of a run whose worker died is honoured by the run that takes over.
        self.cancel_requested = job.cancel_requested
        self.lease_expires_at: datetime = job.lease_expires_at or leases.lease_expiry()
        # Events are numbered here (the claim read the last number) and written in
        # batches: at suspend, retry and the end, and at the first step boundary a
        # second or more after the oldest unwritten one.
        self._seq = int(getattr(job, "last_event_seq", 0) or 0) + 1
        self._events: list[JobEvent] = []
        self._oldest_event = 0.0
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # --- heartbeat -------------------------------------------------------------
    def start_heartbeat(self) -> None:
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"lease-{self.job.pk}", daemon=True
        )
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)

    def _beat(self) -> None:
        interval = settings.COUNTERSIGN_HEARTBEAT_SECONDS
        try:
            while not self._stop.wait(interval):
                try:
                    expires = leases.lease_expiry()  # taken before the write: never optimistic
                    ours, cancel = leases.renew(str(self.job.pk), self.owner, expires)
                except Exception:  # a transient database error: try again next beat
                    logger.exception("lease heartbeat failed", extra={"job_id": str(self.job.pk)})
                    connection.close()
                    continue
                if not ours:
                    self.lease_lost = True
                    return
                self.lease_expires_at = expires
                self.cancel_requested = self.cancel_requested or cancel
        finally:
            connection.close()

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
        ).update(status=JobStatus.WAITING, wait_reason=reason, wake_at=wake_at,
                 lease_owner="", lease_expires_at=None)
        if not updated:
            if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                raise JobCancelled()
            raise LeaseLost()
        self.job.status, self.job.wait_reason, self.job.wake_at = (
            JobStatus.WAITING, reason, wake_at)
        metrics.inc("agent_jobs_total", job_type=self.job.job_type, status=JobStatus.WAITING)
        # In the same transaction, so the timeline never shows a decision before the wait.
        self.emit("job.waiting", {"reason": reason,
                                  "wake_at": wake_at.isoformat() if wake_at else None})
        self.flush_events()
        if wake_at is not None:
            delay = (wake_at - timezone.now()).total_seconds()
            prompt_on_commit(str(self.job.pk), self.job.priority, delay)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Publish live now; write to the database at the next flush."""
        event = JobEvent(job_id=self.job.pk, seq=self._seq, kind=kind, data=data,
                         created_at=timezone.now())
        self._seq += 1
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
        events, self._events = self._events, []
        save_events(events)
        self._seq = events[-1].seq + 1  # renumbered if another writer took our numbers

    # --- outcomes ---------------------------------------------------------------
    def finish(self, status: str, **fields: Any) -> bool:
        updated = Job.objects.filter(pk=self.job.pk, lease_owner=self.owner).update(
            status=status, finished_at=timezone.now(), lease_owner="", lease_expires_at=None,
            wait_reason="", wake_at=None, **fields)
        if not updated:
            logger.warning("lease lost before the outcome was written; another run owns it",
                           extra={"job_id": str(self.job.pk)})
            return False
        job_type = self.job.job_type
        metrics.inc("agent_jobs_total", job_type=job_type, status=status)
        if self.job.started_at is not None:
            elapsed = (timezone.now() - self.job.started_at).total_seconds()
            metrics.observe("agent_jobs_duration_seconds", elapsed, job_type=job_type,
                            status=status)
        return True

    def schedule_retry(self, delay: float, error: BaseException, *, count_attempt: bool) -> bool:
        wake_at = timezone.now() + timedelta(seconds=delay)
        fields: dict[str, Any] = dict(
            status=JobStatus.RETRYING, wake_at=wake_at, lease_owner="", lease_expires_at=None,
            error_type=type(error).__name__, error_message=str(error)[:5000],
            error_traceback=_traceback(error))
        if count_attempt:
            fields["attempts"] = self.job.attempts + 1
        with transaction.atomic():
            updated = Job.objects.filter(pk=self.job.pk, lease_owner=self.owner,
                                         cancel_requested=False).update(**fields)
            if updated:
                enqueue_on_commit(str(self.job.pk), self.job.priority, countdown=delay)
                metrics.inc("agent_jobs_total", job_type=self.job.job_type,
                            status=JobStatus.RETRYING)
        if not updated and Job.objects.filter(pk=self.job.pk, lease_owner=self.owner,
                                              cancel_requested=True).exists():
            raise JobCancelled()
        return bool(updated)

    def retried(self, kind: str, data: dict[str, Any]) -> None:
        self.emit(kind, data)
        self.flush_events()


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))[-20000:]


def _error_fields(error: BaseException) -> dict[str, str]:
    return {"error_type": type(error).__name__, "error_message": str(error)[:5000],
            "error_traceback": _traceback(error)}


def run_job(job_id: str) -> str:
    """Run the job if it is ours to run. Returns what happened, for logs and tests."""
    # Every line of the run names the job; nothing bound by an earlier run (or by a
    # request running it in-process) shows through, and all of it is reset after.
    with logs.bind(job_id=job_id, job_type=None, request_id=None, step_key=None,
                   checkpoint_id=None), metrics.batched():
        return _claim_and_run(job_id)


def _claim_and_run(job_id: str) -> str:
    owner = leases.new_owner()
    job = leases.claim(job_id, owner)
    if job is None:
        logger.debug("job not runnable or leased elsewhere; message dropped",
                     extra={"job_id": job_id})
        return "skipped"
    logs.update(job_type=job.job_type, request_id=job.request_id)
    metrics.inc("agent_jobs_total", job_type=job.job_type, status=JobStatus.RUNNING)
    run = Run(job, owner)
    log_extra = {"job_id": job_id, "job_type": job.job_type}
    outcome = "error"
    try:
        outcome = _run_claimed(run, log_extra)
        return outcome
    finally:
        run.stop_heartbeat()  # whatever escaped, the lease thread must not outlive the run
        # The claim made the job `running`, which other runs of its agent counted: end
        # that however this run ended. A parked run held nothing (and waking others
        # from it could loop); after a lost lease another run owns the job.
        if job.agent_id is not None and outcome not in ("parked", "lease-lost"):
            try:
                admission.release(job, outcome)
            except Exception:  # never mask how the run ended; the next run of the agent fixes it
                logger.exception("could not release the agent's slot", extra=log_extra)


def _run_claimed(run: Run, log_extra: dict[str, str]) -> str:
    job = run.job
    try:
        spec = get_handler(job.job_type)
    except UnknownJobType as exc:
        report_job_failure(job, exc)
        run.finish(JobStatus.FAILED, **_error_fields(exc))
        _finished(job, JobStatus.FAILED)
        return JobStatus.FAILED

    if job.attempts > job.max_attempts:
        lost = WorkerLost(f"the worker running this job died (SIGKILL, OOM or hard time "
                          f"limit) and no attempts are left (max_attempts={job.max_attempts})")
        report_job_failure(job, lost)
        return _end(run, JobStatus.FAILED, _error_fields(lost), log_extra)

    if job.cancel_requested:
        return _end(run, JobStatus.CANCELLED, {}, log_extra)

    try:
        if not admission.admit(run):
            logger.info("agent at its concurrency cap; job parked", extra=log_extra)
            return "parked"
    except JobCancelled:
        return _end(run, JobStatus.CANCELLED, {}, log_extra)
    except LeaseLost:
        return "lease-lost"

    # One query loads every recorded step; a first run (the claim saw none) skips it.
    recorded = JobStep.objects.filter(job_id=job.pk) if getattr(job, "has_steps", True) else []
    steps = {s.key: s for s in recorded}
    run.emit("job.resumed" if steps else "job.started", {"attempt": job.attempts})
    ctx = JobContext(job, steps, run)
    policy = spec.retry or default_policy()
    run.start_heartbeat()
    with job_transaction(job):  # the run as a Sentry transaction (no-op without Sentry)
        return _run_handler(run, spec.fn, ctx, policy, log_extra)


def _run_handler(run: Run, fn: Any, ctx: JobContext, policy: RetryPolicy,
                 log_extra: dict[str, str]) -> str:
    """Call the handler and turn how it ended into the job's next state."""
    job = run.job
    try:
        result = to_json(fn(ctx))
    except Suspend as suspend:
        logger.info("job waiting for %s", suspend.reason, extra=log_extra)
        return JobStatus.WAITING
    except RetryStep as retry:
        run.stop_heartbeat()
        try:
            if run.schedule_retry(retry.delay, retry.error, count_attempt=False):
                run.retried("step.retrying", {"step": retry.key, "delay": round(retry.delay, 3),
                                              "error": str(retry.error)[:500]})
        except JobCancelled:
            return _end(run, JobStatus.CANCELLED, {}, log_extra)
        return JobStatus.RETRYING
    except LeaseLost:  # another run owns the job: write nothing more, events included
        logger.warning("lease lost; stopping this run", extra=log_extra)
        return "lease-lost"
    except JobCancelled:
        run.stop_heartbeat()
        return _end(run, JobStatus.CANCELLED, {}, log_extra)
    except JobRejected as exc:
        run.stop_heartbeat()
        return _end(run, JobStatus.REJECTED, _error_fields(exc), log_extra)
    except Exception as exc:
        run.stop_heartbeat()
        retryable = not isinstance(exc, NonRetryableError) and policy.is_retryable(exc)
        if retryable and job.attempts < job.max_attempts:
            delay = policy.delay(job.attempts)
            logger.warning("job attempt %s failed; retrying in %.1fs", job.attempts, delay,
                           extra=log_extra, exc_info=True)
            try:
                if run.schedule_retry(delay, exc, count_attempt=True):
                    run.retried("job.retrying", {"attempt": job.attempts,
                                                 "delay": round(delay, 3),
                                                 "error": f"{type(exc).__name__}: {exc}"[:500]})
            except JobCancelled:
                return _end(run, JobStatus.CANCELLED, {}, log_extra)
            return JobStatus.RETRYING
        report_job_failure(job, exc)  # before the log line, whose Sentry event is then a dupe
        logger.exception("job failed", extra=log_extra)
        return _end(run, JobStatus.FAILED, _error_fields(exc), log_extra)
    run.stop_heartbeat()
    return _end(run, JobStatus.SUCCEEDED, {"result": result, "error_type": "",
                                           "error_message": "", "error_traceback": ""}, log_extra)


def _end(run: Run, status: str, fields: dict[str, Any], log_extra: dict[str, str]) -> str:
    if run.finish(status, **fields):
        data = {"status": status}
        if fields.get("error_message"):
            data["error"] = f"{fields['error_type']}: {fields['error_message']}"[:500]
        run.emit(f"job.{status}", data)
        run.flush_events()
        logger.info("job %s", status, extra=log_extra)
        _finished(run.job, status)
    return status


def _finished(job: Job, status: str) -> None:
    job_finished.send(sender=Job, job_id=str(job.pk), status=status, parent_id=job.parent_id)
