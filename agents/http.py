"""Outbound HTTP for agents' tools and workflows' `http` nodes: only hosts in
COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS, no redirects (one could leave the allow-list), a
timeout and a size cap. A refusal or a network failure is an `HttpFailed`."""

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

from django.conf import settings

BODY_LIMIT = 20_000


class HttpFailed(Exception):
    """The request was refused (host, URL) or did not get a response."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes  # at most the limit asked for
    truncated: bool

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def host_allowed(host: str) -> bool:
    """Exact names, or ".example.com" for the domain and its subdomains."""
    host = host.lower().rstrip(".")
    for allowed in settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS:
        allowed = allowed.lower()
        if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
            return True
    return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave the allow-list: report it instead


def http_call(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float | None = None,
    limit: int = BODY_LIMIT,
) -> HttpResponse:
    """One request to an allowed host; any status is a response (the caller decides)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailed(f"only http(s) URLs with a host are allowed, not {url!r}")
    if not host_allowed(parts.hostname):
        raise HttpFailed(f"host {parts.hostname!r} is not in COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS")
    request = urllib.request.Request(
        url,
        method=method,
        data=body,
        headers={"User-Agent": "Countersign-Agent/1", **(headers or {})},
    )
    opener = urllib.request.build_opener(_NoRedirects)
    wait = timeout or settings.COUNTERSIGN_HTTP_TOOL_TIMEOUT_SECONDS
    try:
        with opener.open(request, timeout=wait) as response:
            status, raw_headers, raw = response.status, response.headers, response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        status, raw_headers, raw = exc.code, exc.headers, exc.read(limit + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise HttpFailed(f"request failed: {exc}") from exc
    return HttpResponse(
        status=status, headers=_headers(raw_headers), body=raw[:limit], truncated=len(raw) > limit
    )


def _headers(raw: Message) -> dict[str, str]:
    return {name: value for name, value in raw.items()}
