"""Pure pieces of the runtime: retry policy, priorities, the registry."""

import pytest

from jobs.runtime import NonRetryableError, RetryPolicy, get_handler, handler
from jobs.runtime.errors import UnknownJobType
from jobs.runtime.queue import broker_priority


def test_backoff_doubles_and_is_capped():
    policy = RetryPolicy(max_attempts=10, backoff=1.0, backoff_max=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_between_half_and_full_delay():
    policy = RetryPolicy(backoff=2.0, backoff_max=100.0)
    delays = [policy.delay(3) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


def test_non_retryable_errors():
    policy = RetryPolicy(non_retryable=(KeyError,))
    assert not policy.is_retryable(KeyError("k"))
    assert not policy.is_retryable(NonRetryableError("x"))
    assert policy.is_retryable(ConnectionError("x"))


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("broker", "job_priority", "expected"),
    [
        ("redis://127.0.0.1:6379/0", 9, 0),  # kombu's Redis transport serves 0 first
        ("redis://127.0.0.1:6379/0", 0, 9),
        ("amqp://guest:guest@127.0.0.1:5672//", 9, 9),  # RabbitMQ serves the highest first
        ("amqp://guest:guest@127.0.0.1:5672//", 2, 2),
    ],
)
def test_job_priority_maps_to_the_broker_scale(settings, broker, job_priority, expected):
    settings.CELERY_BROKER_URL = broker
    assert broker_priority(job_priority) == expected


def test_unknown_job_type_lists_the_known_ones():
    with pytest.raises(UnknownJobType, match="code-generation"):
        get_handler("no-such-type")


def test_a_job_type_cannot_be_registered_twice():
    @handler("unit-dup")
    def first(ctx):
        return None

    with pytest.raises(ValueError, match="already registered"):

        @handler("unit-dup")
        def second(ctx):
            return None
