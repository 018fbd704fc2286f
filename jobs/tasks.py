"""Thin Celery tasks: ids in, the runtime does the work. Their names are the ones they
had before the runtime moved here: messages already on the broker must still run."""

from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import close_old_connections

import jobs.heartbeat  # noqa: F401  (workers report they are up)
from jobs.retention import retention_prune
from jobs.runtime import engine, reconciler
from jobs.runtime.errors import RunInterrupted
from jobs.runtime.queue import RECONCILE_TASK, RUN_JOB_TASK


@task_prerun.connect
@task_postrun.connect
def _drop_broken_connections(**kwargs: Any) -> None:
    """Workers reuse connections (CELERY_DB_REUSE_MAX); one broken by a database
    restart, or past CONN_MAX_AGE, is closed here so the next task reconnects."""
    close_old_connections()


# While the database is away a run is tried again each second for this long; after
# that the reconciler's pass finds the job.
OUTAGE_RETRY_SECONDS = 1.0
OUTAGE_RETRIES = 120


@shared_task(
    bind=True,
    name=RUN_JOB_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=OUTAGE_RETRIES,
)
def run_job(self: Task, job_id: str, interrupted: str = "") -> str:
    try:
        return engine.run_job(job_id, interrupted=interrupted).value
    except RunInterrupted as exc:
        # The message is consumed: without a new one the job would wait for the
        # reconciler's grace (30 s) once the database is back.
        raise self.retry(
            args=(job_id,),
            kwargs={"interrupted": exc.owner},
            countdown=OUTAGE_RETRY_SECONDS,
            exc=exc,
        ) from exc


@shared_task(name=RECONCILE_TASK, ignore_result=True)
def reconcile() -> int:
    return reconciler.reconcile()


@shared_task(name="jobs.prune", ignore_result=True)
def prune() -> None:
    """One bounded retention pass: a batch of each kind (COUNTERSIGN_RETENTION_*)."""
    days = settings.COUNTERSIGN_RETENTION_DAYS
    retention_prune(
        older_than=timedelta(days=days) if days > 0 else None,
        batch_size=settings.COUNTERSIGN_RETENTION_BATCH,
        max_batches=1,
    )
