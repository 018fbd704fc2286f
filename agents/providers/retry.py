"""Retrying provider calls: 429, 5xx, connection errors and timeouts are tried
again (after the server's Retry-After when it gave one, else with exponential
backoff and jitter); anything else fails at once."""

import logging
import random
import time
from collections.abc import Callable

from django.conf import settings

from agents.providers.base import Completion, ProviderError

logger = logging.getLogger(__name__)


def backoff_seconds(attempt: int, error: ProviderError) -> float:
    """How long to wait before attempt `attempt + 1`."""
    ceiling = settings.COUNTERSIGN_LLM_MAX_RETRY_WAIT_SECONDS
    if error.retry_after is not None:
        return min(max(error.retry_after, 0.0), ceiling)
    base = settings.COUNTERSIGN_LLM_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)
    return min(base * random.uniform(0.5, 1.0), ceiling)


def with_retries(
    call: Callable[[], Completion],
    *,
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, ProviderError, float], None] | None = None,
) -> Completion:
    """Run `call` until it succeeds, fails for good, or uses up `attempts`."""
    attempts = attempts or settings.COUNTERSIGN_LLM_MAX_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ProviderError as error:
            if not error.retryable or attempt == attempts:
                raise
            wait = backoff_seconds(attempt, error)
            logger.warning(
                "LLM call failed (%s); attempt %d of %d in %.1fs",
                error,
                attempt + 1,
                attempts,
                wait,
            )
            if on_retry is not None:
                on_retry(attempt, error, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises
