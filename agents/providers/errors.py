"""What goes wrong in a provider call, as ProviderErrors: SDK exceptions (which are worth
retrying, and after how long as the server said; for the others, what a person should
fix) and tool arguments a model wrote as broken JSON. Messages never carry the API key,
and the providers raise these outside their `except` blocks, so the SDK exception (whose
text may quote the key back) is not chained on for a traceback or error tracker to show."""

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, NamedTuple

import httpx2

from agents.providers.base import ProviderError

# 408/409 are what the SDKs themselves would retry; 429 and 5xx are the usual.
RETRYABLE_STATUSES = {408, 409, 429}
# Error types a server may send inside a 200 stream that are worth another try.
RETRYABLE_TYPES = {
    "server_error",
    "api_error",
    "overloaded_error",
    "rate_limit_error",
    "timeout_error",
    "service_unavailable_error",
}
MAX_MESSAGE = 300  # of the server's own words, quoted in ours


class SdkErrors(NamedTuple):
    """One SDK's exception classes (both SDKs name them alike)."""

    timeout: type[Exception]
    connection: type[Exception]
    status: type[Exception]  # has .status_code, .body, .response
    api: type[Exception]  # the base: also an error event inside a stream


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait the server asked for: `retry-after-ms`, else `Retry-After` as seconds or
    as an HTTP date; None if it gave none (or nothing readable)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if (millis := _number(lowered.get("retry-after-ms"))) is not None:
        return max(millis / 1000, 0.0)
    value = lowered.get("retry-after")
    if value is None:
        return None
    if (seconds := _number(value)) is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _error_field(body: object, name: str) -> str:
    """`name` of an error body: OpenAI's {"error": {...}} (the SDK passes the inner
    object), Anthropic's {"type": "error", "error": {...}}; a non-JSON body as text."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        value = (inner if isinstance(inner, Mapping) else body).get(name)
        return value if isinstance(value, str) else ""
    return body.strip() if isinstance(body, str) and name == "message" else ""


@dataclass(frozen=True)
class ErrorMapper:
    provider: str  # the name the provider was registered under, used in messages
    sdk: SdkErrors
    base_url: str
    timeout: float
    api_key: str = field(repr=False)  # only to scrub it from what servers say
    key_env: str = ""  # the variable holding the key, named in messages about it

    def __post_init__(self) -> None:
        if not self.key_env:
            object.__setattr__(self, "key_env", f"{self.provider.upper()}_API_KEY")

    def translate(self, error: Exception, *, model: str) -> ProviderError:
        # Anthropic's stream lets transport errors out as httpx2's own while iterating.
        if isinstance(error, self.sdk.timeout | httpx2.TimeoutException):
            return ProviderError(
                f"{self.provider} did not answer within {self.timeout:g}s (timeout)", retryable=True
            )
        if isinstance(error, self.sdk.connection | httpx2.RequestError):
            cause = error.__cause__ or error  # the SDK's own text is just "Connection error."
            return ProviderError(
                f"could not reach {self.provider} at {self.base_url}: "
                f"{self._quote(str(cause)) or type(cause).__name__}",
                retryable=True,
            )
        body = getattr(error, "body", None)
        status = getattr(error, "status_code", None)
        if isinstance(error, self.sdk.status) and isinstance(status, int) and status >= 400:
            response = getattr(error, "response", None)
            headers = response.headers if response is not None else {}
            return self.for_status(status, body, headers, model=model)
        if isinstance(error, self.sdk.api):  # an error event in the middle of a stream
            kind = _error_field(body, "type")
            return ProviderError(
                f"{self.provider} failed mid-response ({kind or 'error'}){self._detail(body)}",
                retryable=kind in RETRYABLE_TYPES,
            )
        return ProviderError(
            f"{self.provider} call failed: {type(error).__name__}", retryable=False
        )

    def for_status(
        self, status: int, body: object, headers: Mapping[str, str], *, model: str
    ) -> ProviderError:
        name, detail = self.provider, self._detail(body)
        if status == 401:  # the server's words may quote part of the key: left out
            return ProviderError(
                f"{name} rejected the API key (401): check {self.key_env}",
                retryable=False,
                status=status,
            )
        if status == 403:
            return ProviderError(
                f"{name} denied access (403){detail}; check that "
                f"{self.key_env} may use model '{model}'",
                retryable=False,
                status=status,
            )
        if status == 404:
            return ProviderError(
                f"model '{model}' not found at {name} (404){detail}", retryable=False, status=status
            )
        if status == 429 and "insufficient_quota" in (
            _error_field(body, "code"),
            _error_field(body, "type"),
        ):
            return ProviderError(
                f"{name} says the account is out of quota (429){detail}",
                retryable=False,
                status=status,
            )
        if status in RETRYABLE_STATUSES or status >= 500:
            what = "rate-limited the request" if status == 429 else "failed"
            return ProviderError(
                f"{name} {what} ({status}){detail}",
                retryable=True,
                status=status,
                retry_after=retry_after_seconds(headers),
            )
        return ProviderError(
            f"{name} refused the request ({status}){detail}", retryable=False, status=status
        )

    def _detail(self, body: object) -> str:
        said = self._quote(_error_field(body, "message"))
        return f": {said}" if said else ""

    def _quote(self, text: str) -> str:
        if self.api_key:
            text = text.replace(self.api_key, "[redacted]")
        text = " ".join(text.split())
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def parse_arguments(provider: str, tool: str, raw: str) -> dict[str, Any]:
    """A tool call's arguments, which the model wrote as JSON (and may have got wrong)."""
    if not raw.strip():
        return {}  # some servers send "" for a tool without parameters
    try:
        arguments = json.loads(raw)
    except ValueError as error:
        raise ProviderError(
            f"{provider} returned invalid JSON arguments for tool '{tool}': "
            f"{error} in {raw[:200]!r}",
            retryable=False,
        ) from None
    if not isinstance(arguments, dict):
        raise ProviderError(
            f"{provider} returned arguments for tool '{tool}' that are not "
            f"a JSON object: {raw[:200]!r}",
            retryable=False,
        )
    return arguments
