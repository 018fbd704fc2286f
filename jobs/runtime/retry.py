"""Retry policies: how many attempts, how long to wait between them."""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.runtime.errors import NonRetryableError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff, capped, with jitter over the upper half of each delay.

    `max_attempts` counts the first try: 3 means one try and two retries.
    """

    max_attempts: int = 3
    backoff: float = 2.0
    backoff_max: float = 300.0
    jitter: bool = True
    non_retryable: Sequence[type[BaseException]] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError("backoff must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        if not self.jitter:
            return ceiling
        # Half fixed, half random: spreads a thundering herd, keeps a floor.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, NonRetryableError):
            return False
        return not isinstance(error, tuple(self.non_retryable))
