"""The job-handler registry: `@handler("job-type")` makes a function runnable as a job."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.runtime.errors import UnknownJobType
from jobs.runtime.retry import RetryPolicy

if TYPE_CHECKING:
    from accounts.models import Organization
    from jobs.runtime.context import JobContext

HandlerFn = Callable[["JobContext"], Any]


@dataclass(frozen=True)
class JobOptions:
    """What a job type's `prepare` hook decides about a new job."""

    concurrency_key: str = ""


# prepare(input, organization) -> JobOptions, or raise JobError to refuse the job. It runs
# when a job is created, however it is created (API, command line, a parent job).
Prepare = Callable[[dict[str, Any], "Organization"], JobOptions]


@dataclass(frozen=True)
class HandlerSpec:
    job_type: str
    fn: HandlerFn
    retry: RetryPolicy | None
    description: str
    input_schema: dict[str, Any] | None = None  # checked when a job is created
    prepare: Prepare | None = None


_handlers: dict[str, HandlerSpec] = {}


def handler(
    job_type: str,
    *,
    retry: RetryPolicy | None = None,
    description: str = "",
    input_schema: dict[str, Any] | None = None,
    prepare: Prepare | None = None,
) -> Callable[[HandlerFn], HandlerFn]:
    """Register `fn` as the handler of `job_type`.

    `retry` is the job-level policy (None: the settings' default); `input_schema` a JSON
    Schema a new job's input must match; `prepare` a hook that may refuse a new job or
    give it options (a concurrency key).
    """

    def register(fn: HandlerFn) -> HandlerFn:
        existing = _handlers.get(job_type)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"job type {job_type!r} is already registered to {existing.fn!r}")
        first_line = (fn.__doc__ or "").strip().splitlines()[:1]
        _handlers[job_type] = HandlerSpec(
            job_type=job_type,
            fn=fn,
            retry=retry,
            description=description or "".join(first_line),
            input_schema=input_schema,
            prepare=prepare,
        )
        return fn

    return register


def get_handler(job_type: str) -> HandlerSpec:
    try:
        return _handlers[job_type]
    except KeyError:
        known = ", ".join(sorted(_handlers)) or "none"
        raise UnknownJobType(f"unknown job type {job_type!r}; known types: {known}") from None


def registered_job_types() -> list[str]:
    return sorted(_handlers)
