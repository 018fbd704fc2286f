"""Waking a waiting job: the resume primitive every kind of wait ends with."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from core import metrics
from jobs.models import Job, JobEvent, JobStatus, StepStatus
from jobs.runtime import folded
from jobs.runtime.context import to_json
from jobs.runtime.events import append_event, publish
from jobs.runtime.queue import prompt_on_commit


def wake_job(*, job_id: str, reason: str = "") -> bool:
    """Make a waiting job runnable and enqueue it on commit. Call it inside the
    transaction that resolved what the job waited for (a decision, a child's end), so
    the wake-up commits with its cause. False if the job was not waiting."""
    with connection.cursor() as cursor:
        cursor.execute(*folded.wake_statement(job_id, timezone.now()))
        row = cursor.fetchone()
    if row is None:  # not waiting (cancelled meanwhile, say): nothing to wake
        return False
    append_event(str(job_id), "job.woken", _woken(reason))
    _woke(str(job_id), *row)
    return True


def resolve_wait(
    job_id: str,
    *,
    rows: Sequence[Model] = (),
    updates: Sequence[folded.Update] = (),
    events: Sequence[tuple[str, dict[str, Any]]] = (),
    wake: str | None = None,
    resolved: tuple[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Write what resolves (or advances) a job's wait, together: `rows` (new instances
    of the caller's models; their pks are set), `updates` (`folded.Update`: a model, the
    values of the fields that pick its rows, the values to set), the job's `events`
    (kind, data) in order and, if `wake` is a reason, the wake-up (`wake_job`), its
    event after them. Call it in the transaction that decided, holding the job's row
    lock, as a decision does.

    One statement on PostgreSQL (`folded.resolve`), one at a time elsewhere. So on
    PostgreSQL the rows are written without `Model.save()` (no signals), an update does
    not see the rows inserted with it, and the job's own row may not be updated with a
    wake-up (one statement updates a row once). The events are stamped `now` (default:
    the call's time) there; elsewhere each as it is written. Returns whether the job
    was woken.

    `resolved` is (the wait's step key, the data its waiter's poll would now resolve
    with): the wait's step is recorded as resolved, so the run that resumes finds it
    among its steps and goes on without polling the waiter again (a transaction of five
    round trips). A step not `waiting`, or of a job not waiting, is left to the poll."""
    if any(not row._state.adding or row.pk is not None for row in rows):
        raise ValueError("resolve_wait inserts new rows only")
    if wake is not None and any(model is Job for model, _, _ in updates):
        raise ValueError("resolve_wait's wake-up is the job row's one update")
    now = now or timezone.now()
    statements = [] if resolved is None else [_resolved_step(job_id, *resolved, now=now)]
    if not folded.resolvable():
        for row in rows:
            row.save(force_insert=True)
        for model, where, values in updates:
            model._default_manager.filter(**where).update(**values)
        for statement in statements:
            with connection.cursor() as cursor:
                cursor.execute(*statement)
        for kind, data in events:
            append_event(str(job_id), kind, data)
        return wake is not None and wake_job(job_id=job_id, reason=wake)
    if not (rows or updates or statements or events or wake is not None):
        return False
    made = [JobEvent(job_id=job_id, kind=kind, data=data, created_at=now) for kind, data in events]
    woken = None
    if wake is not None:
        woken = JobEvent(job_id=job_id, kind="job.woken", data=_woken(wake), created_at=now)
    woke = folded.resolve(
        job_id=job_id,
        rows=rows,
        updates=updates,
        statements=statements,
        events=made,
        woken=woken,
    )
    written = [*made, *([woken] if woke and woken else [])]
    if all(event.pk is not None for event in written):
        publish(*written)
    else:  # a writer of events took a number meanwhile (the job lock does not hold them
        # off): written again in order after the last, as one at a time would have
        JobEvent.objects.filter(pk__in=[e.pk for e in written if e.pk is not None]).delete()
        for event in written:
            append_event(str(job_id), event.kind, event.data)
    if woke:
        _woke(str(job_id), *woke)
    return woke is not None


def _resolved_step(job_id: str, key: str, data: Any, *, now: datetime) -> tuple[str, list[Any]]:
    """The UPDATE that records a waiting step as resolved with `data`: what the run's
    own poll would write (`JobContext._poll`). Only while its job waits (as the
    statement began: before its wake-up): a run going on meanwhile polls for itself."""
    values = {
        "status": StepStatus.SUCCEEDED,
        "output": to_json(data),
        "error": "",
        "attempt": 1,
        "finished_at": now,
    }
    return folded.waiting_step_update(job_id, key, values)


def _woken(reason: str) -> dict[str, Any]:
    return {"reason": reason} if reason else {}


def _woke(job_id: str, priority: int, job_type: str) -> None:
    prompt_on_commit(job_id, priority)  # its enqueue time is written with the wake-up
    metrics.inc("agent_jobs_total", job_type=job_type, status=JobStatus.QUEUED)
