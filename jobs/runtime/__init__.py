"""The durable runtime: memoized steps, suspend/resume, leases, retries.

It knows nothing of checkpoints or workflows; they build on `wait` and `wake_job`.
"""

from jobs.runtime.context import JobContext
from jobs.runtime.errors import (
    JobRejected,
    NonDeterministicReplay,
    NonRetryableError,
    UnknownJobType,
)
from jobs.runtime.registry import get_handler, handler, registered_job_types
from jobs.runtime.retry import RetryPolicy
from jobs.runtime.waits import Pending, Resolved, Waiter, register_waiter

__all__ = [
    "JobContext",
    "JobRejected",
    "NonDeterministicReplay",
    "NonRetryableError",
    "Pending",
    "Resolved",
    "RetryPolicy",
    "UnknownJobType",
    "Waiter",
    "get_handler",
    "handler",
    "register_waiter",
    "registered_job_types",
]
