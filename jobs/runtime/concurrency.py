"""Concurrency keys: at most N runs at once of the jobs that share a key.

A job may carry a key ("agent:12", "workflow:7:acme"); the app that owns the key's
prefix registers how many of its jobs may run at once (`register_concurrency_limit`),
so the runtime knows no model above it. A run is admitted after it claims its lease
and before its handler starts; admission and release take a lock on the key, so they
happen one at a time per key: the count of running jobs read under the lock is exact,
and two runs cannot both take the last slot. A run that finds no free slot parks: its
job waits (reason PARKED) holding no worker. Every run of the key that ends queues
parked jobs again, most urgent and oldest first, one per slot that no running or
queued job will take. A parked job is also re-checked after
COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS, for a run that died without releasing.

The signals `run_started` and `run_ended` are sent under the same lock (see signals.py).
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from jobs.models import PARKED, Job, JobStatus
from jobs.runtime.context import Run
from jobs.runtime.outcomes import RunOutcome
from jobs.runtime.queue import wake_at_after
from jobs.runtime.signals import run_ended, run_started
from jobs.runtime.wake import wake_job

logger = logging.getLogger(__name__)

# limit(key) -> how many may run at once (0: no limit), or None if the key names
# nothing (a deleted agent): then no limit either, and the handler reports the rest.
Limit = Callable[[str], int | None]
_limits: dict[str, tuple[Limit, bool]] = {}


def register_concurrency_limit(
    prefix: str, limit: Limit, *, held_while_waiting: bool = False
) -> None:
    """Keys "<prefix>:…" are limited by `limit(key)`. By default a slot is held while a
    job runs (an agent's cap: a job waiting for a person holds none); with
    `held_while_waiting`, from its start to its end, waits included (a workflow's limit:
    a run paused at an approval still counts)."""
    _limits[prefix] = (limit, held_while_waiting)


def _rule(key: str) -> tuple[Limit | None, bool]:
    limit, held = _limits.get(key.partition(":")[0], (None, False))
    if limit is None:
        logger.warning("no limit registered for concurrency key %r; not limited", key)
    return limit, held


def limit_of(key: str) -> int:
    limit, _ = _rule(key)
    return (limit(key) or 0) if limit is not None else 0


def _holding(key: str, *, exclude: Job | None = None) -> int:
    """How many jobs of the key hold a slot now (besides `exclude`)."""
    _, held_while_waiting = _rule(key)
    now = timezone.now()
    holders = Job.objects.holding_slot(key, now)
    if held_while_waiting:
        holders = holders | Job.objects.started_unfinished(key)
    if exclude is not None:
        holders = holders.exclude(pk=exclude.pk)
    return holders.count()


def _lock(key: str) -> None:
    """Serialise admissions and releases of one key until the transaction ends.
    SQLite needs nothing: its write transactions (BEGIN IMMEDIATE) are serial already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def _running_others(job: Job) -> int:
    return Job.objects.holding_slot(job.concurrency_key, timezone.now()).exclude(pk=job.pk).count()


def admit(run: Run) -> bool:
    """May this run go on? If not, its job is parked (and committed) before returning."""
    job = run.job
    if not job.concurrency_key:
        run_started.send(sender=Job, job=job)
        return True
    with transaction.atomic():
        _lock(job.concurrency_key)
        cap = limit_of(job.concurrency_key)
        if cap and _holding(job.concurrency_key, exclude=job) >= cap:
            run.mark_waiting(
                PARKED, wake_at_after(settings.COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS)
            )
            return False
        run_started.send(sender=Job, job=job)
    return True


def release(job: Job, outcome: RunOutcome) -> None:
    """After a run that held a slot ended however it did (finished, waiting, retrying,
    failed before its handler): say so, and hand the free slots to parked jobs."""
    if not job.concurrency_key:
        run_ended.send(sender=Job, job=job, outcome=outcome, running_others=0)
        return
    with transaction.atomic():
        _lock(job.concurrency_key)
        running = _running_others(job)
        run_ended.send(sender=Job, job=job, outcome=outcome, running_others=running)
        cap = limit_of(job.concurrency_key)
        if not cap:
            return
        # Queued jobs (woken ones included) will take slots of their own; where slots are
        # held through waits, those that had started are among the holders already.
        queued = Job.objects.filter(concurrency_key=job.concurrency_key, status=JobStatus.QUEUED)
        if _rule(job.concurrency_key)[1]:
            queued = queued.filter(started_at__isnull=True)
        free = cap - _holding(job.concurrency_key) - queued.count()
        if free > 0:
            # Queued, they are no longer parked: the next release picks the ones after.
            for pk in Job.objects.parked(job.concurrency_key).values_list("pk", flat=True)[:free]:
                wake_job(job_id=str(pk), reason="a concurrency slot is free")
