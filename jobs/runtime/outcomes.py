"""How one run of a job ended: the job's next status, or why the run wrote none."""

from enum import StrEnum


class RunOutcome(StrEnum):
    # The job ended.
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    # The job will run again.
    WAITING = "waiting"  # for a wait to resolve (a decision, a timer, a child job)
    RETRYING = "retrying"  # after a back-off
    PARKED = "parked"  # at its concurrency key's limit, until a slot frees
    # The run wrote no outcome.
    LEASE_LOST = "lease-lost"  # another run owns the job now
    SKIPPED = "skipped"  # not runnable, or leased elsewhere: a duplicate message

    @property
    def held_slot(self) -> bool:
        """Did the run count against its concurrency key (so its end must free it)?"""
        return self not in (RunOutcome.PARKED, RunOutcome.LEASE_LOST, RunOutcome.SKIPPED)
