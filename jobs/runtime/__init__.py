"""The durable runtime: memoized steps, suspend and resume, leases, retries, concurrency
keys. Other apps use this package, never its modules (an import contract checks it).

It knows nothing above it: apps build on the generic wait (`register_waiter`, then
`wake_job` when the wait resolves, or `resolve_wait` to write what resolved it with the
wake-up), on concurrency keys whose limits they register, on job types' `prepare` hooks
and on the signals.
"""

from jobs.runtime.children import ChildJobWaiter, ChildrenWaiter
from jobs.runtime.concurrency import register_concurrency_limit
from jobs.runtime.context import JobContext
from jobs.runtime.errors import (
    DuplicateStepKey,
    JobConflict,
    JobError,
    JobRejected,
    NonDeterministicReplay,
    NonRetryableError,
    UnknownJobType,
    WorkerLost,
)
from jobs.runtime.events import append_event
from jobs.runtime.outcomes import RunOutcome
from jobs.runtime.registry import (
    JobOptions,
    get_handler,
    handler,
    registered_job_types,
)
from jobs.runtime.retry import RetryPolicy
from jobs.runtime.signals import job_finished, job_retried, run_ended, run_started
from jobs.runtime.waits import Pending, Resolved, Waiter, register_waiter
from jobs.runtime.wake import resolve_wait, wake_job
from jobs.runtime.workspace import (
    FileSpec,
    UnsafePath,
    check_files,
    job_workspace,
    safe_path,
    write_files,
)

__all__ = [
    "ChildJobWaiter",
    "ChildrenWaiter",
    "DuplicateStepKey",
    "FileSpec",
    "JobConflict",
    "JobContext",
    "JobError",
    "JobOptions",
    "JobRejected",
    "NonDeterministicReplay",
    "NonRetryableError",
    "Pending",
    "Resolved",
    "RetryPolicy",
    "RunOutcome",
    "UnknownJobType",
    "UnsafePath",
    "Waiter",
    "WorkerLost",
    "append_event",
    "check_files",
    "get_handler",
    "handler",
    "job_finished",
    "job_retried",
    "job_workspace",
    "register_concurrency_limit",
    "register_waiter",
    "registered_job_types",
    "resolve_wait",
    "run_ended",
    "run_started",
    "safe_path",
    "wake_job",
    "write_files",
]
