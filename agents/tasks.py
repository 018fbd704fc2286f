"""Thin Celery tasks: ids in, the runtime does the work."""

from celery import shared_task

from agents.runtime import engine, reconciler


@shared_task(name="agents.run_job", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def run_job(job_id: str) -> str:
    return engine.run_job(job_id)


@shared_task(name="agents.reconcile", ignore_result=True)
def reconcile() -> int:
    return reconciler.reconcile()
