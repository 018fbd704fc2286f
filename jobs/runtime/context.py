"""JobContext: what a handler sees. Every durable operation goes through it."""

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from core import logs, metrics
from jobs.models import Job, JobStep, StepKind, StepStatus
from jobs.runtime.errors import (
    DuplicateStepKey,
    LeaseLost,
    NonDeterministicReplay,
    NonRetryableError,
    RetryStep,
    Suspend,
)
from jobs.runtime.retry import RetryPolicy
from jobs.runtime.waits import Pending, TimerWaiter, Waiter, make_waiter
from jobs.runtime.workspace import job_workspace

T = TypeVar("T")

# Buffered progress events reach the database at least this often while steps run.
EVENT_FLUSH_SECONDS = 1.0


def to_json(value: Any) -> Any:
    """Normalise a value through JSON so a first run and a replay see the same thing."""
    try:
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    except (TypeError, ValueError) as exc:
        raise NonRetryableError(f"step output is not JSON-serialisable: {exc}") from exc


class Run(Protocol):
    """What the context needs of the run it belongs to (jobs.runtime.engine.Run): its
    lease, its wait and its buffered events. A protocol, so this module needs no engine."""

    job: Job

    def check_lease(self) -> None: ...

    def check_boundary(self) -> None: ...

    def mark_waiting(self, reason: str, wake_at: datetime | None) -> None: ...

    def emit(self, kind: str, data: dict[str, Any]) -> None: ...

    def event_mark(self) -> int: ...

    def drop_events_since(self, mark: int) -> None: ...

    def flush_events(self, older_than: float | None = None) -> None: ...

    def hold_step(self, step: JobStep) -> None: ...

    def flush_step(self) -> None: ...


class JobContext:
    """The handler's handle on its job: input, memoized steps, waits, events."""

    def __init__(self, job: Job, steps: dict[str, JobStep], run: Run) -> None:
        self.job = job
        self._steps = steps
        self._by_position = {s.position: s for s in steps.values()}
        self._position = 0
        self._seen: set[str] = set()
        self._run = run

    # --- facts ---------------------------------------------------------------
    @property
    def input(self) -> dict[str, Any]:
        return self.job.input

    @property
    def job_id(self) -> str:
        return str(self.job.id)

    @property
    def workspace(self) -> Path:
        """This job's private folder for files (created on first use by writers)."""
        return job_workspace(self.job_id)

    # --- durable operations --------------------------------------------------
    def attempt(self, key: str) -> int:
        """Which attempt the next run of step `key` is (1 for a first run): a step's
        function may decide by it whether a failure is still worth retrying."""
        memo = self._steps.get(key)
        return memo.attempt + 1 if memo is not None else 1

    def step(self, key: str, fn: Callable[[], T], *, retry: RetryPolicy | None = None) -> T:
        """Run `fn` once for this job and memoize its JSON result under `key`.

        On a replay a finished step returns its stored result without running.
        With `retry`, a failure is retried (re-enqueued with backoff) up to the
        policy's attempts, and then fails the job; without it, the job's policy applies.
        """
        position = self._enter(key)
        memo = self._steps.get(key)
        if memo is not None and memo.status == StepStatus.SUCCEEDED:
            return cast(T, memo.output)
        self._run.check_boundary()
        attempt = memo.attempt + 1 if memo is not None else 1
        started = timezone.now()
        try:
            with logs.bind(step_key=key):
                output = to_json(fn())
        except Exception as exc:
            self._run.check_lease()
            self._save(
                key,
                position,
                memo,
                kind=StepKind.STEP,
                status=StepStatus.FAILED,
                output=None,
                error=f"{type(exc).__name__}: {exc}",
                attempt=attempt,
                started=started,
            )
            self._step_metrics(StepStatus.FAILED, started)
            if retry is not None and not isinstance(exc, NonRetryableError):
                if attempt < retry.max_attempts and retry.is_retryable(exc):
                    raise RetryStep(key, retry.delay(attempt), exc) from exc
                raise NonRetryableError(
                    f"step {key!r} failed after {attempt} attempt(s): {type(exc).__name__}: {exc}"
                ) from exc
            raise
        self._run.check_lease()
        self._save(
            key,
            position,
            memo,
            kind=StepKind.STEP,
            status=StepStatus.SUCCEEDED,
            output=output,
            error="",
            attempt=attempt,
            started=started,
            hold=True,
        )
        self._step_metrics(StepStatus.SUCCEEDED, started)
        self._run.flush_events(older_than=EVENT_FLUSH_SECONDS)
        return cast(T, output)

    def _step_metrics(self, status: str, started: datetime) -> None:
        job_type = self.job.job_type
        metrics.inc("agent_job_steps_total", job_type=job_type, status=status)
        metrics.observe(
            "agent_step_duration_seconds",
            (timezone.now() - started).total_seconds(),
            job_type=job_type,
        )

    def wait(self, key: str, waiter: Waiter) -> Any:
        """Suspend the job until `waiter` resolves; return its (memoized) result."""
        position = self._enter(key)
        memo = self._steps.get(key)
        if memo is not None and memo.status == StepStatus.SUCCEEDED:
            return waiter.load(memo.output)
        self._run.check_boundary()
        started = memo.started_at if memo is not None and memo.started_at else timezone.now()
        mark = self._run.event_mark()
        try:
            with logs.bind(step_key=key):
                outcome = self._poll(key, position, memo, waiter, started)
        except BaseException:
            self._run.drop_events_since(mark)  # they describe rows that were rolled back
            raise
        if isinstance(outcome, Pending):
            raise Suspend(waiter.reason)
        return waiter.load(self._steps[key].output)

    def _poll(
        self, key: str, position: int, memo: JobStep | None, waiter: Waiter, started: Any
    ) -> Any:
        with transaction.atomic():
            outcome = waiter.poll(job=self.job, key=key, step=memo, emit=self._run.emit)
            if isinstance(outcome, Pending):
                self._save(
                    key,
                    position,
                    memo,
                    kind=StepKind.WAIT,
                    status=StepStatus.WAITING,
                    output=outcome.state,
                    error="",
                    attempt=1,
                    started=started,
                    finished=False,
                )
                self._run.mark_waiting(waiter.reason, outcome.wake_at)
            else:
                self._save(
                    key,
                    position,
                    memo,
                    kind=StepKind.WAIT,
                    status=StepStatus.SUCCEEDED,
                    output=to_json(outcome.data),
                    error="",
                    attempt=1,
                    started=started,
                )
        return outcome

    def checkpoint(self, key: str, *, title: str, kind: str = "approval", **spec: Any) -> Any:
        """Open a checkpoint and pause until a person decides (see checkpoints.waiter)."""
        return self.wait(key, make_waiter("checkpoint", key=key, title=title, kind=kind, **spec))

    def sleep(self, key: str, seconds: float) -> None:
        """A durable timer: the job suspends and is woken from the database, not memory."""
        self.wait(key, TimerWaiter(seconds=seconds))

    def emit(self, kind: str, data: dict[str, Any] | None = None) -> None:
        """Append a progress event (and publish it live).

        While replaying the part of the handler an earlier run already went
        through, the event was recorded then and is not repeated.
        """
        if self.replaying:
            return
        self._run.emit(kind, data or {})

    @property
    def replaying(self) -> bool:
        """True until the handler reaches a point no earlier run got past."""
        return bool(self._by_position) and self._position <= max(self._by_position)

    # --- internals -------------------------------------------------------------
    def _enter(self, key: str) -> int:
        self._run.flush_step()  # the step before this one is recorded before anything else
        if not isinstance(key, str) or not key:
            raise NonRetryableError("a step key must be a non-empty string")
        if key in self._seen:
            raise DuplicateStepKey(f"step key {key!r} used twice in one job")
        self._seen.add(key)
        position = self._position
        self._position += 1
        recorded = self._by_position.get(position)
        if recorded is not None and recorded.key != key:
            raise NonDeterministicReplay(
                f"position {position} was step {recorded.key!r} in an earlier run but is "
                f"{key!r} now: the handler changed its step order"
            )
        memo = self._steps.get(key)
        if memo is not None and memo.position != position:
            raise NonDeterministicReplay(
                f"step {key!r} was reached at position {memo.position} in an earlier run "
                f"but at position {position} now: the handler changed its step order"
            )
        return position

    def _save(
        self,
        key: str,
        position: int,
        memo: JobStep | None,
        *,
        kind: str,
        status: str,
        output: Any,
        error: str,
        attempt: int,
        started: Any,
        finished: bool = True,
        hold: bool = False,
    ) -> None:
        """Write the step in one round trip (INSERT, or UPDATE of a known row); a new
        finished step's INSERT is held for the run's next write when `hold`."""
        finished_at = timezone.now() if finished else None
        if memo is None:
            memo = JobStep(
                job_id=self.job.pk,
                key=key,
                position=position,
                kind=kind,
                status=status,
                output=output,
                error=error,
                attempt=attempt,
                started_at=started,
                finished_at=finished_at,
            )
            if hold:
                self._run.hold_step(memo)
            else:
                memo.save(force_insert=True)
            self._steps[key] = memo
            self._by_position[position] = memo
            return
        # A finished step is never rewritten; if it was, another run owns the job now.
        written = (
            JobStep.objects.filter(pk=memo.pk)
            .exclude(status=StepStatus.SUCCEEDED)
            .update(
                status=status,
                output=output,
                error=error,
                attempt=attempt,
                started_at=started,
                finished_at=finished_at,
            )
        )
        if not written:
            raise LeaseLost()
        memo.status, memo.output, memo.error, memo.attempt = status, output, error, attempt
        memo.started_at, memo.finished_at = started, finished_at
