"""Job handlers and the baseline Celery task used by the benchmarks.

Loaded in the benchmark process and in its worker through
COUNTERSIGN_HANDLER_MODULES=bench.handlers.
"""

import time

from celery import shared_task

from jobs.models import JobEvent
from jobs.runtime import JobContext, handler


def _noop() -> None:
    return None


@handler("bench-noop-1", description="Benchmark: one no-op step")
def noop_1(ctx: JobContext) -> None:
    ctx.step("s0", _noop)


@handler("bench-noop-10", description="Benchmark: ten no-op steps")
def noop_10(ctx: JobContext) -> None:
    for i in range(10):
        ctx.step(f"s{i}", _noop)


@handler("bench-steps", description="Benchmark: input.n no-op steps")
def noop_n(ctx: JobContext) -> None:
    # The baseline of bench/workflows.py: what a chain of n memoized steps costs
    # without the workflow engine around them.
    for i in range(int(ctx.input["n"])):
        ctx.step(f"s{i}", _noop)


@handler("bench-hold", description="Benchmark: one step that sleeps input.seconds")
def hold(ctx: JobContext) -> None:
    ctx.step("hold", lambda: time.sleep(float(ctx.input["seconds"])))


@handler("bench-approval", description="Benchmark: a checkpoint, then one timestamp step")
def approval(ctx: JobContext) -> float:
    ctx.checkpoint("go", title="go", payload={})
    # The output is the moment the handler runs again after the decision.
    return ctx.step("resumed", time.time)


@shared_task(
    name="bench.plain_write", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def plain_write(job_id: str, seq: int) -> None:
    """The baseline: a plain Celery task that writes one row (one INSERT)."""
    JobEvent.objects.create(job_id=job_id, seq=seq, kind="bench.plain", data={})


@shared_task(name="bench.stamp", ignore_result=True)
def stamp(job_id: str, seq: int) -> None:
    """The moment a plain task starts: on an idle worker, what the broker and the pool
    take to deliver a message, the floor under any resume latency."""
    JobEvent.objects.create(job_id=job_id, seq=seq, kind="bench.stamp", data={"at": time.time()})
