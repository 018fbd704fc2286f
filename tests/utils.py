from collections.abc import Callable
from typing import TypeVar

from jobs.processes import poll_until

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll until `predicate()` is truthy; fail the test with `message` on timeout."""
    return poll_until(predicate, timeout=timeout, what=message, interval=interval)


def job_status(job_id: object) -> str:
    from jobs.models import Job

    return Job.objects.values_list("status", flat=True).get(pk=job_id)


def wait_status(job_id: object, *statuses: str, timeout: float = 30.0) -> str:
    return wait_for(
        lambda: job_status(job_id) if job_status(job_id) in statuses else None,
        timeout=timeout,
        message=f"job {job_id} to reach {statuses}",
    )
