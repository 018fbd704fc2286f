"""Worker status and control through Celery's remote control (broadcast to workers).

Pausing a worker stops it taking new messages from the job queue; what it is
running finishes normally, and paused jobs are unaffected (they hold no worker).
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings

INSPECT_TIMEOUT = 1.0


class WorkerNotFound(LookupError):
    pass


def _app() -> Any:
    from config.celery import app

    return app


def workers_status(timeout: float = INSPECT_TIMEOUT, name: str | None = None
                   ) -> list[dict[str, Any]]:
    """Every worker that answers within `timeout` (or just `name`, which returns as
    soon as it replies), with what it runs and consumes."""
    control = _app().control
    options: dict[str, Any] = {"timeout": timeout}
    if name is not None:
        options.update(destination=[name], limit=1)
    def ask(question: str) -> dict[str, Any]:
        return getattr(control.inspect(**options), question)() or {}

    # Each broadcast waits for its replies; ask the three questions at once.
    with ThreadPoolExecutor(max_workers=3) as pool:
        stats, active, queues = pool.map(ask, ("stats", "active", "active_queues"))
    job_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    workers = []
    for name in sorted(set(stats) | set(active) | set(queues)):
        worker_stats = stats.get(name, {})
        consumed = [q["name"] for q in queues.get(name, [])]
        running = active.get(name, [])
        workers.append({
            "name": name,
            "consuming": job_queue in consumed,
            "queues": consumed,
            "concurrency": worker_stats.get("pool", {}).get("max-concurrency"),
            "processed": sum(worker_stats.get("total", {}).values()),
            "active": len(running),
            "active_jobs": [task["args"][0] for task in running
                            if task.get("name") == "agents.run_job" and task.get("args")],
            "pid": worker_stats.get("pid"),
        })
    return workers


def worker_status(name: str) -> dict[str, Any]:
    for worker in workers_status(name=name):
        if worker["name"] == name:
            return worker
    raise WorkerNotFound(f"no worker named {name!r} answered")


def worker_pause(name: str) -> dict[str, Any]:
    """Stop consuming the job queue; running tasks finish."""
    worker_status(name)
    _app().control.cancel_consumer(settings.CELERY_TASK_DEFAULT_QUEUE, destination=[name],
                                   reply=True, limit=1, timeout=INSPECT_TIMEOUT * 3)
    return worker_status(name)


def worker_resume(name: str) -> dict[str, Any]:
    worker_status(name)
    _app().control.add_consumer(settings.CELERY_TASK_DEFAULT_QUEUE, destination=[name],
                                reply=True, limit=1, timeout=INSPECT_TIMEOUT * 3)
    return worker_status(name)
