"""Worker status and control through Celery's remote control (broadcast to workers).

Pausing a worker stops it taking new messages from the job queue; what it is
running finishes normally, and paused jobs are unaffected (they hold no worker).
Growing or shrinking changes how many processes a (prefork) worker's pool runs.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import current_app
from django.conf import settings

from core.errors import ApplicationError, Conflict, NotFound
from jobs.runtime.queue import RUN_JOB_TASK

INSPECT_TIMEOUT = 1.0
MAX_RESIZE = 32  # processes added or stopped at once: a typo must not fork thousands
# How long pause/resume/grow/shrink wait for the change to show before answering.
SETTLE_TIMEOUT = 5.0


class WorkerNotFound(NotFound):
    pass


class WorkerControlError(Conflict):
    """The worker refused a control command (e.g. every process busy) or did not answer."""


def _app() -> Any:
    return current_app


def workers_status(
    timeout: float = INSPECT_TIMEOUT, name: str | None = None
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
        workers.append(
            {
                "name": name,
                "consuming": job_queue in consumed,
                "queues": consumed,
                "concurrency": _pool_size(worker_stats.get("pool", {})),
                "processed": sum(worker_stats.get("total", {}).values()),
                "active": len(running),
                "active_jobs": [
                    task["args"][0]
                    for task in running
                    if task.get("name") == RUN_JOB_TASK and task.get("args")
                ],
                "pid": worker_stats.get("pid"),
            }
        )
    return workers


def _pool_size(pool: dict[str, Any]) -> int | None:
    # A prefork pool lists its child processes; `max-concurrency` is the size it
    # started with and stays there after pool_grow/pool_shrink.
    if "processes" in pool:
        return len(pool["processes"])
    return pool.get("max-concurrency")


def worker_status(name: str) -> dict[str, Any]:
    for worker in workers_status(name=name):
        if worker["name"] == name:
            return worker
    raise WorkerNotFound(f"no worker named {name!r} answered")


def worker_pause(name: str) -> dict[str, Any]:
    """Stop consuming the job queue; running tasks finish."""
    worker_status(name)
    _app().control.cancel_consumer(
        settings.CELERY_TASK_DEFAULT_QUEUE,
        destination=[name],
        reply=True,
        limit=1,
        timeout=INSPECT_TIMEOUT * 3,
    )
    return _settle(name, lambda status: not status["consuming"])


def worker_resume(name: str) -> dict[str, Any]:
    worker_status(name)
    _app().control.add_consumer(
        settings.CELERY_TASK_DEFAULT_QUEUE,
        destination=[name],
        reply=True,
        limit=1,
        timeout=INSPECT_TIMEOUT * 3,
    )
    return _settle(name, lambda status: status["consuming"])


def _check_resize(n: int) -> None:
    if not 1 <= n <= MAX_RESIZE:
        raise ApplicationError(f"n must be from 1 to {MAX_RESIZE}", {"n": ["Out of range."]})


def worker_grow(name: str, n: int) -> dict[str, Any]:
    """Add `n` processes to the worker's pool (prefork only); its status after."""
    _check_resize(n)
    before = worker_status(name)["concurrency"]
    _pool_command("pool_grow", name, n)
    return _settle(name, _has_processes(None if before is None else before + n))


def worker_shrink(name: str, n: int) -> dict[str, Any]:
    """Stop `n` idle processes of the worker's pool; its status after. A pool of
    none would keep taking messages (prefetch) and never run them, so refuse."""
    _check_resize(n)
    before = worker_status(name)["concurrency"]
    if before is not None and before - n < 1:
        message = (
            f"{name} has {before} process(es); shrinking by {n} would leave none "
            "(pause it instead, or stop it)"
        )
        raise ApplicationError(message, {"n": [message]})
    _pool_command("pool_shrink", name, n)
    return _settle(name, _has_processes(None if before is None else before - n))


def _pool_command(command: str, name: str, n: int) -> None:
    replies = getattr(_app().control, command)(
        n=n, destination=[name], reply=True, limit=1, timeout=INSPECT_TIMEOUT * 3
    )
    answer = next((reply[name] for reply in replies or [] if name in reply), None)
    if answer is None:
        raise WorkerControlError(f"{name} did not answer {command}")
    if "error" in answer:
        raise WorkerControlError(f"{name} refused {command}: {answer['error']}")


def _has_processes(expected: int | None) -> Callable[[dict[str, Any]], bool]:
    return lambda status: expected is None or status["concurrency"] == expected


def _settle(
    name: str, done: Callable[[dict[str, Any]], bool], timeout: float = SETTLE_TIMEOUT
) -> dict[str, Any]:
    """The worker's status once `done(status)`, or as it is when `timeout` runs out:
    workers reply to these commands before they carry them out (consumers change
    on the next loop iteration, pool processes start and stop after that)."""
    deadline = time.monotonic() + timeout
    while True:
        status = worker_status(name)
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.1)
