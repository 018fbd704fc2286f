"""Structured logs: who (request, job, step, checkpoint) each line is about.

The ids live in context variables, bound with `bind(...)` around a request, a job's
run, a step or a checkpoint decision; `ContextFilter` copies them onto every record
the console handler sees, and the formatters print them: one JSON object per line
(`LOG_FORMAT=json`, production) or `key=value` after the message (`text`, development).
Context variables follow a request through asgiref's sync_to_async and stay inside
the one thread (or asyncio task) that set them, so concurrent requests and the runs
of one worker process never see each other's ids.
"""

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

Value = str | int | None

# In the order the text format prints them.
FIELDS = ("request_id", "job_id", "job_type", "step_key", "checkpoint_id")
_vars: dict[str, ContextVar[Value]] = {name: ContextVar(name, default=None) for name in FIELDS}

# What every LogRecord has; anything else on a record came from `extra=` (or the filter).
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


@contextmanager
def bind(**fields: Value) -> Iterator[None]:
    """Bind context fields for the block, restoring the previous values after it.

    None or "" clears a field for the block (a job without a request id must not
    show the id of whatever ran it in-process).
    """
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    tokens: list[tuple[ContextVar[Value], Token[Value]]] = [
        (_vars[name], _vars[name].set(value)) for name, value in fields.items()
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def update(**fields: Value) -> None:
    """Set fields without a block of their own: only inside a `bind()` of the same
    fields, whose exit restores them (a token resets its variable to what it was
    before that bind, whatever was set since)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        _vars[name].set(value)


def current() -> dict[str, str | int]:
    """The fields bound now (unset and empty ones left out)."""
    values = {name: var.get() for name, var in _vars.items()}
    return {name: value for name, value in values.items() if value not in (None, "")}


def get_request_id() -> str:
    value = _vars["request_id"].get()
    return str(value) if value else ""


def clean_request_id(raw: str | None) -> str:
    """A caller's X-Request-ID if it is a plain token, else a new one: the id ends up
    in log lines and the database, so nothing that could forge or flood them."""
    if raw and _REQUEST_ID.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Copy the bound context onto each record; a value given in `extra=` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if getattr(record, name, None) in (None, ""):
                setattr(record, name, value)
        # Django logs 4xx/5xx responses ("Unauthorized: /api/…") after the middleware
        # has returned, with the request in `extra`: take its id from there.
        if getattr(record, "request_id", None) in (None, ""):
            request_id = getattr(getattr(record, "request", None), "request_id", None)
            if request_id:
                record.request_id = request_id
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, message, the context
    fields that are set, JSON-serialisable `extra` fields, and `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                entry[name] = value
        for name, value in record.__dict__.items():
            if (
                name not in _STANDARD
                and name not in entry
                and not name.startswith("_")
                and _jsonable(value)
            ):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value ...` for reading in a terminal."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(message)s", datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        pairs = []
        for name in FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                text = str(value)
                if not text or any(c.isspace() or c in "\"'=" for c in text):
                    text = json.dumps(text)
                pairs.append(f"{name}={text}")
        message = super().formatMessage(record)
        return f"{message} {' '.join(pairs)}" if pairs else message
