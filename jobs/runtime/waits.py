"""The generic suspend/resume primitive.

A *waiter* describes one kind of wait (a timer, a child job, a checkpoint, …). The
runtime asks it, inside a transaction, whether the wait is resolved; if not, the job
is marked waiting in that same transaction and the run suspends. Whoever resolves
the wait later calls `wake_job`, which re-queues the job on commit.

The runtime knows nothing of what apps above it wait for: they register waiter
factories (`register_waiter("checkpoint", ...)`) and handlers reach them through
`JobContext.wait`, or sugar such as `JobContext.checkpoint`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.utils import timezone

from jobs.models import Job, JobStep


@dataclass(frozen=True)
class Pending:
    """Still waiting. `wake_at` makes the job runnable again at that time (timers)."""

    state: Any = None
    wake_at: datetime | None = None


@dataclass(frozen=True)
class Resolved:
    """Done: `data` (JSON) is memoized as the wait's output."""

    data: Any


class Waiter(Protocol):
    reason: str

    def poll(
        self,
        *,
        job: Job,
        key: str,
        step: JobStep | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Pending | Resolved:
        """Open the wait if new (idempotently) and report its state. Runs in a
        transaction; `emit` records a progress event of the job."""
        ...

    def load(self, data: Any) -> Any:
        """Turn the memoized output into the handler's return value (or raise)."""
        ...


WaiterFactory = Callable[..., Waiter]
_factories: dict[str, WaiterFactory] = {}


def register_waiter(name: str, factory: WaiterFactory) -> None:
    _factories[name] = factory


def make_waiter(name: str, **spec: Any) -> Waiter:
    try:
        factory = _factories[name]
    except KeyError:
        raise LookupError(f"no waiter registered for {name!r}; is its app installed?") from None
    return factory(**spec)


@dataclass
class TimerWaiter:
    """A durable timer: the wake time is stored, so a restart or a lost message loses nothing."""

    seconds: float
    reason: str = "timer"

    def poll(
        self,
        *,
        job: Job,
        key: str,
        step: JobStep | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Pending | Resolved:
        now = timezone.now()
        if step is not None and step.output and "until" in step.output:
            until = datetime.fromisoformat(step.output["until"])
        else:
            until = now + timedelta(seconds=self.seconds)
        if now >= until:
            return Resolved({"until": until.isoformat(), "slept": self.seconds})
        return Pending(state={"until": until.isoformat()}, wake_at=until)

    def load(self, data: Any) -> None:
        return None


register_waiter("timer", TimerWaiter)
