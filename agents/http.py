"""Outbound HTTP for agents' tools and workflows' `http` nodes: only hosts in
COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS, no redirects (one could leave the allow-list), a
timeout and a size cap. A refusal or a network failure is an `HttpFailed`."""

import http.client
import re
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


# In the authority part of a URL, what lets parsers disagree on the host: userinfo ("@"),
# a backslash, percent-escapes, whitespace and control characters.
_AMBIGUOUS = re.compile(r"[@\\%\s\x00-\x1f\x7f]")


def checked_url(url: str) -> str:
    """`url` rebuilt from its parsed scheme, host, port, path and query, so the host
    checked against the allow-list is the host the request reaches; HttpFailed if it
    is not an http(s) URL to an allowed host, or its authority could be read two ways."""
    if not isinstance(url, str) or any(ord(c) <= 32 or c == "\x7f" for c in url):
        raise HttpFailed("a URL may not hold spaces or control characters (escape them)")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HttpFailed(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailed(f"only http(s) URLs with a host are allowed, not {url!r}")
    if _AMBIGUOUS.search(parts.netloc):
        raise HttpFailed(
            f"the host part of {url!r} may not hold userinfo (@), a backslash, %-escapes or spaces"
        )
    host = parts.hostname
    if not host_allowed(host):
        raise HttpFailed(f"host {host!r} is not in COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS")
    authority = f"[{host}]" if ":" in host else host
    if port is not None:
        authority += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, authority, parts.path, parts.query, ""))


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
    checked = checked_url(url)
    request = urllib.request.Request(
        checked,
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
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise HttpFailed(f"request failed: {exc}") from exc
    return HttpResponse(
        status=status, headers=_headers(raw_headers), body=raw[:limit], truncated=len(raw) > limit
    )


def _headers(raw: Message) -> dict[str, str]:
    return {name: value for name, value in raw.items()}
