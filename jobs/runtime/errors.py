"""Exceptions that steer the runtime, and the errors of requests about jobs.

Handlers may raise or catch the public ones; the control-flow signals derive from
BaseException so that a handler's `except Exception` cannot swallow them.
"""

from core.errors import ApplicationError, Conflict


class Suspend(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Internal: the job must stop here and wait. Handlers must not catch it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryStep(BaseException):  # noqa: N818 - control flow
    """Internal: a step failed and its own policy asks for another try later."""

    def __init__(self, key: str, delay: float, error: BaseException) -> None:
        super().__init__(key)
        self.key = key
        self.delay = delay
        self.error = error


class JobCancelled(BaseException):  # noqa: N818 - control flow
    """Internal: cancellation was requested; raised at the next step boundary."""


class LeaseLost(BaseException):  # noqa: N818 - control flow
    """Internal: another run owns the job now; this run must stop without writing."""


class RunInterrupted(Exception):  # noqa: N818 - the run's state, not the job's
    """The database went away under the run (a restart, a killed backend). Nothing after
    its last commit happened; `owner` is the lease it may have left behind ("" if none),
    for the next try to drop instead of waiting for it to expire."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


class NonRetryableError(Exception):
    """Raise (or subclass) to fail a job at once, without retries."""


class NonDeterministicReplay(NonRetryableError):
    """A replay reached steps in a different order than the recorded run."""


class DuplicateStepKey(NonRetryableError):
    """A handler used one step key twice in a job."""


class WorkerLost(NonRetryableError):
    """The job's worker died (SIGKILL, OOM, hard time limit) more often than it may retry."""


class JobRejected(Exception):
    """Uncaught in a handler, ends the job with status `rejected`."""


class JobError(ApplicationError):
    """A request about a job that cannot be carried out (bad input, wrong state)."""


class JobConflict(JobError, Conflict):
    """The job's current state does not allow the request."""


class UnknownJobType(JobError):
    def __init__(self, message: str) -> None:
        super().__init__(message, {"job_type": [message]})
