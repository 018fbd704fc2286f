"""Child jobs: a job may start others and wait for them to end (the `run_job` tool,
workflow branches). The wait is a waiter like any other; a child's end wakes its parent."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.models import TERMINAL_STATUSES, Job, JobStatus, JobStep
from jobs.runtime.waits import Pending, Resolved, register_waiter
from jobs.runtime.wake import wake_job

REASON = "child job"


@dataclass
class ChildJobWaiter:
    """Wait for another job to end. The child's row is locked while the parent
    decides to wait, so a child ending at that moment either is seen as ended or
    finds the parent waiting and wakes it (`wake_parent`)."""

    job_id: str
    reason: str = REASON

    def poll(
        self,
        *,
        job: Job,
        key: str,
        step: JobStep | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Pending | Resolved:
        child = (
            Job.objects.select_for_update()
            .only("status", "result", "error_type", "error_message")
            .get(pk=self.job_id)
        )
        if child.status in TERMINAL_STATUSES:
            error = f"{child.error_type}: {child.error_message}" if child.error_type else ""
            return Resolved(
                {
                    "job_id": self.job_id,
                    "status": child.status,
                    "result": child.result,
                    "error": error,
                }
            )
        return Pending(state={"job_id": self.job_id})

    def load(self, data: Any) -> dict[str, Any]:
        return dict(data)


register_waiter(REASON, ChildJobWaiter)


FAILED = frozenset({JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED})


@dataclass
class ChildrenWaiter:
    """Wait for several child jobs (a workflow's parallel branches) to reach a join:

    - `all`: every child ended; with `fail_fast`, also as soon as one failed;
    - `any`: one child succeeded, or every child ended.

    Resolved with each ended child's status, result and error (and which are still
    going, for the caller to cancel). The children's rows are locked, in order, while
    the parent decides to wait, as ChildJobWaiter does for one."""

    job_ids: list[str]
    join: str = "all"
    fail_fast: bool = False
    reason: str = REASON

    def __post_init__(self) -> None:
        if self.join not in ("all", "any"):
            raise ValueError(f"join must be all or any, not {self.join!r}")

    def poll(
        self,
        *,
        job: Job,
        key: str,
        step: JobStep | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Pending | Resolved:
        children = list(
            Job.objects.select_for_update()
            .filter(pk__in=self.job_ids)
            .order_by("pk")
            .only("status", "result", "error_type", "error_message")
        )
        ended = {str(c.pk): c for c in children if c.status in TERMINAL_STATUSES}
        succeeded = [c for c in ended.values() if c.status == JobStatus.SUCCEEDED]
        failed = [c for c in ended.values() if c.status in FAILED]
        if self.join == "any":
            done = bool(succeeded) or len(ended) == len(self.job_ids)
        else:
            done = len(ended) == len(self.job_ids) or (self.fail_fast and bool(failed))
        if not done:
            return Pending(state={"job_ids": self.job_ids, "ended": len(ended)})
        return Resolved(
            {
                "children": {
                    pk: {
                        "status": c.status,
                        "result": c.result,
                        "error": f"{c.error_type}: {c.error_message}" if c.error_type else "",
                    }
                    for pk, c in ended.items()
                },
                "running": [pk for pk in self.job_ids if pk not in ended],
            }
        )

    def load(self, data: Any) -> dict[str, Any]:
        return dict(data)


def wake_parent(sender: Any, job_id: str, status: str, parent_id: Any, **kwargs: Any) -> None:
    """`job_finished` receiver: a child ended, so its parent, if it waits for a child,
    runs again (its wait then reads the child's outcome)."""
    if parent_id is None:
        return
    if Job.objects.filter(pk=parent_id, status=JobStatus.WAITING, wait_reason=REASON).exists():
        wake_job(job_id=str(parent_id), reason=f"child job {job_id} {status}")
