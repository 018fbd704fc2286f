"""Sentry error reporting: off unless SENTRY_DSN is set.

`init_sentry()` runs at the end of config/settings.py, so the web server, every
worker process and beat report alike (Django and Celery integrations). The apps
report through `report_failure`, `traced` and `breadcrumb` (the runtime: a failed
job, a run; checkpoints: a decision); each is a cheap no-op while Sentry is off.

Nothing secret leaves the process: every error event, transaction and breadcrumb
goes through `scrub` (see `_is_sensitive_key` and `_SECRET_PATTERNS`), and objects
in stack frames are shown by `redacted_repr`, which leaves payload fields out.
"""

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from django.core.exceptions import ImproperlyConfigured

from core.env import env_float, env_str

if TYPE_CHECKING:
    from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

FILTERED = "[Filtered]"

# Keys whose values are never sent, whatever they hold (compared lower-case, "-" as "_").
_SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "proxy_authorization",
        "cookie",
        "cookies",
        "set_cookie",
        "dsn",
        "webhook_secret",
        "sessionid",
        "csrftoken",
        "csrfmiddlewaretoken",
    }
)
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password", "_apikey", "_dsn")
_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "credential",
)
# What users and models put in: job input, results, checkpoint payloads (file contents),
# tool-call arguments, messages.
# An agent's task, context and instructions too.
_PAYLOAD_KEYS = frozenset(
    {"payload", "input", "result", "arguments", "content", "task", "context", "instructions"}
)
# On objects (frame variables) also a checkpoint's submitted input and a reviewer's words.
_PAYLOAD_FIELDS = _PAYLOAD_KEYS | {"data", "reason", "message"}

_SECRET_NAME = r"\b[\w-]*(?:key|token|secret|password|passwd|authorization)"
_PAYLOAD_NAME = r"\b(?:payload|input|result|arguments|content)"
# Provider keys and our own tokens, wherever they appear in text.
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), FILTERED),  # OpenAI, Anthropic sk-ant-, OpenRouter
    (re.compile(r"\bgsk_[A-Za-z0-9]{8,}"), FILTERED),  # Groq
    (re.compile(r"\bcs_[A-Za-z0-9_-]{16,}"), FILTERED),  # our API tokens (accounts.services)
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {FILTERED}"),
    (re.compile(r"(://[^/\s:@]*:)[^/\s@]+@"), rf"\1{FILTERED}@"),  # [user]:password@ in URLs
    # name=value where the name looks secret (query strings, reprs), and a quoted value
    # after a secret or payload name (`api_key='…'`, `"content": "…"`).
    (re.compile(rf"(?i)({_SECRET_NAME}=)([^&\s'\",)]+)"), rf"\1{FILTERED}"),
    (
        re.compile(
            rf"(?i)((?:{_SECRET_NAME}|{_PAYLOAD_NAME})['\"]?\s*[:=]\s*)"
            r"(['\"])(?:\\.|(?!\2)[^\\])*\2"
        ),
        rf"\1\2{FILTERED}\2",
    ),
]
# Environment variables whose values are replaced wherever they appear, plus any
# variable named like a secret. Short values would match ordinary words: skipped.
_SECRET_ENV = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_API_KEY",
    "VLLM_API_KEY",
    "SECRET_KEY",
)
_SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
_MIN_SECRET_LENGTH = 8
# Parts of an event that are SDK bookkeeping, not data: left as they are.
_UNSCRUBBED_EVENT_KEYS = frozenset({"_meta", "sdk", "modules"})


def init_sentry(*, debug: bool = False) -> bool:
    """Start the SDK when SENTRY_DSN is set; returns whether it did."""
    dsn = env_str("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=env_str("SENTRY_ENVIRONMENT", "").strip()
        or ("development" if debug else "production"),
        release=env_str("SENTRY_RELEASE", "").strip() or None,
        # No send_default_pii: this SDK deprecates it (for data_collection), and unset
        # means off: no user ids, IP addresses or cookies, and the SDK's own scrubber on.
        integrations=[DjangoIntegration(), CeleryIntegration()],
        traces_sampler=traces_sampler(
            job_rate=_rate("SENTRY_JOB_TRACES_SAMPLE_RATE", 1.0),
            rate=_rate("SENTRY_TRACES_SAMPLE_RATE", 0.0),
        ),
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=before_breadcrumb,
        custom_repr=redacted_repr,
    )
    return True


def _rate(name: str, default: float) -> float:
    rate = env_float(name, default)
    if not 0.0 <= rate <= 1.0:
        raise ImproperlyConfigured(f"{name} must be between 0 and 1, got {rate}")
    return rate


def traces_sampler(*, job_rate: float, rate: float) -> Callable[[dict[str, Any]], float]:
    """Job runs at `job_rate` (they are few and long, and what this system is about);
    everything else (requests, sweepers) at `rate`, following an upstream decision."""

    def sample(context: dict[str, Any]) -> float:
        task = (context.get("celery_job") or {}).get("task")
        op = (context.get("transaction_context") or {}).get("op")
        if task in _JOB_TASKS or op in _JOB_OPS:
            return job_rate
        parent = context.get("parent_sampled")
        return rate if parent is None else float(parent)

    return sample


def enabled() -> bool:
    return sentry_sdk.get_client().is_active()


# --- hooks for the apps ----------------------------------------------------------------
# Celery tasks and span ops whose transactions are sampled at the job rate; the jobs app
# names its own (the runtime's task and run op) when it starts.
_JOB_TASKS: set[str] = set()
_JOB_OPS: set[str] = set()


def sample_as_jobs(*, task: str, op: str) -> None:
    _JOB_TASKS.add(task)
    _JOB_OPS.add(op)


def report_failure(
    exc: BaseException,
    *,
    tags: Mapping[str, str],
    context: tuple[str, dict[str, Any]] | None = None,
) -> None:
    """Report an exception with tags (and a named context), marking the running
    transaction failed. Call it before logging the failure: the logging integration's
    event for the same exception is then dropped as a duplicate (DedupeIntegration)."""
    if not enabled():
        return
    with sentry_sdk.new_scope() as scope:
        for name, value in tags.items():
            scope.set_tag(name, value)
        if context is not None:
            scope.set_context(*context)
        span = scope.span
        if span is not None:
            span.set_status("internal_error")
            if scope.transaction is not None:
                scope.transaction.set_status("internal_error")
        sentry_sdk.capture_exception(exc)


@contextmanager
def traced(*, op: str, name: str, tags: Mapping[str, str]) -> Iterator[None]:
    """Make the block a transaction called `name` (op `op`), tagged.

    Under Celery the task is already a transaction: rather than nest a second one,
    that transaction is renamed and tagged, and the block is an `op` span inside it.
    Outside Celery (tests, scripts) the block starts its own transaction.
    """
    if not enabled():
        yield
        return
    from sentry_sdk.tracing import TransactionSource

    with sentry_sdk.isolation_scope() as isolation:
        for tag, value in tags.items():
            isolation.set_tag(tag, value)  # errors inside the block carry them too
        scope = sentry_sdk.get_current_scope()
        transaction = scope.transaction
        span: AbstractContextManager[Any]
        if transaction is not None:
            scope.set_transaction_name(name, source=TransactionSource.TASK)
            for tag, value in tags.items():
                transaction.set_tag(tag, value)
            span = sentry_sdk.start_span(op=op, name=name)
        else:
            span = sentry_sdk.start_transaction(op=op, name=name, source=TransactionSource.TASK)
        with span as started:
            for tag, value in tags.items():
                started.set_tag(tag, value)
            yield


def breadcrumb(*, category: str, message: str, data: dict[str, Any]) -> None:
    """Note something that happened (without payloads: callers pass ids and states)."""
    if not enabled():
        return
    sentry_sdk.add_breadcrumb(category=category, level="info", message=message, data=data)


# --- scrubbing ----------------------------------------------------------------------------
def before_send(event: "Event", hint: "Hint") -> "Event":
    return cast("Event", scrub_event(event))


def before_breadcrumb(crumb: "Breadcrumb", hint: "BreadcrumbHint") -> "Breadcrumb":
    return cast("Breadcrumb", scrub(crumb))


def scrub_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event (error or transaction, after the SDK serialized it) without secrets."""
    secrets = secret_values()
    scrubbed = {
        key: value if key in _UNSCRUBBED_EVENT_KEYS else scrub(value, secrets)
        for key, value in event.items()
    }
    request = scrubbed.get("request")
    if isinstance(request, dict) and request.get("data"):
        # Request bodies are what people typed: tasks, chat messages, edited payloads,
        # submitted input, reasons. None of it is needed to debug a failure.
        request["data"] = FILTERED
    return scrubbed


def scrub(value: Any, secrets: Sequence[str] | None = None) -> Any:
    """A copy of `value` (dicts, lists, strings) with secrets and payloads replaced."""
    if secrets is None:
        secrets = secret_values()
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            key: FILTERED if _is_sensitive_key(key) else scrub(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item, secrets) for item in value]
    return value


def scrub_text(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, FILTERED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def secret_values() -> list[str]:
    """Secret values from the environment, longest first (one may contain another)."""
    values = {
        value
        for name, value in os.environ.items()
        if (name in _SECRET_ENV or name.upper().endswith(_SECRET_ENV_SUFFIXES))
        and len(value) >= _MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def _is_sensitive_key(key: Any) -> bool:
    name = str(key).lower().replace("-", "_")
    return (
        name in _SECRET_KEYS
        or name in _PAYLOAD_KEYS
        or name.endswith(_SECRET_SUFFIXES)
        or any(word in name for word in _SECRET_WORDS)
    )


def redacted_repr(value: Any, depth: int = 0) -> str | None:
    """How frame variables show dataclasses (a checkpoint's `Decision`, a tool call):
    their payload fields left out. None: the SDK's own repr."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type) or depth > 3:
        return None
    fields = []
    for field in dataclasses.fields(value):
        if _is_sensitive_key(field.name) or field.name in _PAYLOAD_FIELDS:
            shown = repr(FILTERED)
        else:
            item = getattr(value, field.name, None)
            try:
                shown = redacted_repr(item, depth + 1) or repr(scrub(item))
            except Exception:  # the SDK would fall back to the plain repr: never that
                shown = f"<{type(item).__name__}>"
        fields.append(f"{field.name}={shown}")
    return f"{type(value).__name__}({', '.join(fields)})"
