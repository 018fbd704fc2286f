"""Job handlers used only by the test suite (loaded in the worker through
COUNTERSIGN_HANDLER_MODULES=tests.handlers).

Side effects go to files named in the job's input, so the test process can
count exactly how often each step body ran in the worker process.
"""

import logging
import time
from pathlib import Path
from typing import Any

from jobs.runtime import JobContext, NonRetryableError, RetryPolicy, handler

logger = logging.getLogger(__name__)


def mark(log: str, line: str) -> None:
    with open(log, "a") as handle:
        handle.write(line + "\n")


def wait_for_file(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


@handler("test-counting", retry=RetryPolicy(max_attempts=3, backoff=0.1, jitter=False))
def counting(ctx: JobContext) -> dict[str, Any]:
    """Four steps; `slow` blocks until the release file exists."""
    log, release = ctx.input["log"], ctx.input.get("release")

    def body(name: str) -> str:
        mark(log, f"{name}:start")
        if name == "slow" and release:
            wait_for_file(release)
        mark(log, f"{name}:end")
        return name

    done = [ctx.step(name, lambda name=name: body(name)) for name in ("one", "two", "slow")]
    if ctx.input.get("checkpoint"):
        ctx.checkpoint("review", title="Review counting", payload={"done": done})
    done.append(ctx.step("three", lambda: body("three")))
    return {"done": done}


@handler("test-noop")
def noop(ctx: JobContext) -> int:
    for i in range(int(ctx.input.get("steps", 1))):
        ctx.step(f"s{i}", lambda: None)
    return int(ctx.input.get("steps", 1))


@handler("test-approval")
def approval(ctx: JobContext) -> dict[str, Any]:
    decision = ctx.checkpoint(
        "go",
        title="Go?",
        payload=ctx.input.get("payload", {"n": 1}),
        expires_in=ctx.input.get("expires_in"),
        on_timeout=ctx.input.get("on_timeout", "reject"),
        required_approvals=ctx.input.get("required_approvals", 1),
    )
    after = ctx.step("after", lambda: {"payload": decision.payload})
    return {
        "payload": after["payload"],
        "decided_by": decision.decided_by,
        "timed_out": decision.timed_out,
    }


@handler("test-catch-reject")
def catch_reject(ctx: JobContext) -> dict[str, Any]:
    from checkpoints.waiter import CheckpointRejected

    try:
        ctx.checkpoint("go", title="Go?", payload={})
    except CheckpointRejected as exc:
        reason = exc.reason
        return ctx.step("fallback", lambda: {"rejected": reason})
    return {"rejected": None}


@handler("test-input")
def input_job(ctx: JobContext) -> dict[str, Any]:
    decision = ctx.checkpoint(
        "branch",
        kind="input",
        title="Which branch?",
        input_schema={
            "type": "object",
            "required": ["branch"],
            "properties": {"branch": {"type": "string", "minLength": 1}},
        },
    )
    return {"branch": decision.data["branch"]}


@handler("test-sleep")
def sleeper(ctx: JobContext) -> dict[str, Any]:
    before = ctx.step("before", lambda: time.time())
    ctx.sleep("nap", float(ctx.input.get("seconds", 1.0)))
    after = ctx.step("after", lambda: time.time())
    return {"slept": after - before}


@handler("test-flaky-step")
def flaky_step(ctx: JobContext) -> dict[str, Any]:
    """A step that fails `failures` times, with its own retry policy."""
    log = ctx.input["log"]

    def attempt() -> int:
        mark(log, f"attempt:{time.time()}")
        tries = len(Path(log).read_text().splitlines())
        if tries <= int(ctx.input["failures"]):
            raise ConnectionError(f"transient failure {tries}")
        return tries

    first = ctx.step("first", lambda: mark(log + ".first", "ran"))
    tries = ctx.step(
        "flaky",
        attempt,
        retry=RetryPolicy(
            max_attempts=int(ctx.input.get("max_attempts", 5)), backoff=0.3, jitter=False
        ),
    )
    return {"tries": tries, "first": first}


@handler(
    "test-flaky-job",
    retry=RetryPolicy(max_attempts=3, backoff=0.2, jitter=False, non_retryable=(KeyError,)),
)
def flaky_job(ctx: JobContext) -> str:
    """Fails at job level (no step policy): the job's own retry policy applies."""
    log = ctx.input["log"]
    ctx.step("setup", lambda: mark(log + ".setup", "ran"))
    mark(log, "run")
    runs = len(Path(log).read_text().splitlines())
    if ctx.input.get("fatal"):
        raise NonRetryableError("cannot go on")
    if ctx.input.get("keyerror"):
        raise KeyError("missing")
    if runs <= int(ctx.input["failures"]):
        raise RuntimeError(f"failure {runs}")
    return "ok"


@handler("test-order")
def order(ctx: JobContext) -> list[str]:
    """Step order read from a file: changing it between runs must be detected."""
    names = Path(ctx.input["order_file"]).read_text().split()
    done = [ctx.step(name, lambda name=name: name) for name in names]
    ctx.checkpoint("pause", title="Pause", payload={})
    return done


@handler("test-steady")
def steady(ctx: JobContext) -> int:
    """Many short steps, so a cancel lands between two of them."""
    log = ctx.input["log"]
    for i in range(int(ctx.input.get("steps", 200))):
        ctx.step(f"s{i}", lambda i=i: (mark(log, f"s{i}"), time.sleep(0.05))[1])
    return 0


@handler("test-steps-then-pause")
def steps_then_pause(ctx: JobContext) -> int:
    for i in range(int(ctx.input["steps"])):
        ctx.step(f"s{i}", lambda i=i: i)
    ctx.checkpoint("go", title="Go?", payload={})
    return ctx.step("last", lambda: int(ctx.input["steps"]))


@handler("test-suicide")
def suicide(ctx: JobContext) -> None:
    """A step that always kills its own worker process, as an OOM would."""
    import os
    import signal

    ctx.step("ok", lambda: mark(ctx.input["log"], "ok"))
    ctx.step("boom", lambda: (mark(ctx.input["log"], "boom"), os.kill(os.getpid(), signal.SIGKILL)))


@handler("test-logging")
def logging_steps(ctx: JobContext) -> int:
    """Two steps that log, for the log-context tests (test_logging)."""
    for key in ("fetch", "write"):
        ctx.step(key, lambda key=key: logger.info("step %s working", key))
    return 2
