"""The `/metrics` endpoint."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST

from core.metrics.exposition import render


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. With COUNTERSIGN_METRICS_TOKEN set, only a scraper
    sending `Authorization: Bearer <token>` may read it. The figures add up every
    organization's work, so with DEBUG off the token is required."""
    token = settings.COUNTERSIGN_METRICS_TOKEN
    if not token and not settings.DEBUG:
        return HttpResponse(
            "/metrics is off: set COUNTERSIGN_METRICS_TOKEN (DEBUG is off)\n",
            status=403,
            content_type="text/plain",
        )
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(
                "a bearer token is required\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
