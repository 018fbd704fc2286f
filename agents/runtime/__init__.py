"""The durable runtime: memoized steps, suspend/resume, leases, retries.

It knows nothing of checkpoints or workflows; they build on `wait` and `wake_job`.
"""

from agents.runtime.context import JobContext
from agents.runtime.errors import (
    JobRejected,
    NonDeterministicReplay,
    NonRetryableError,
    UnknownJobType,
)
from agents.runtime.registry import get_handler, handler, registered_job_types
from agents.runtime.retry import RetryPolicy
from agents.runtime.waits import Pending, Resolved, Waiter, register_waiter

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
